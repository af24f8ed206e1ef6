"""Keeps the feature store complete: notices when Redis lost what serve applied, and rebuilds
the missing part from Kafka in the background while scoring goes on.

Two signs of loss are checked. At partition assignment, the store's applied-offset marks are
compared with the group's committed offsets (``fraudstream.features.rebuild.behind``): a store
restored
from an old snapshot, or emptied while no serve ran, is behind. Under a running serve the
marks cannot tell (serve writes fresh marks into an emptied server), so every serve claims an
epoch key in the store at start; when the store answers again after an outage and the epoch
key is gone, the server lost its data. Either way ``fraudstream.features.rebuild.rebuild`` runs in a
thread: the store is idempotent and exact in any arrival order, so it may run beside serve.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter, Gauge

from fraudstream.features.exceptions import FeatureStoreUnavailable, FraudstreamError
from fraudstream.features.local_store import OnlineStore
from fraudstream.features.rebuild import RebuildReport, behind, rebuild

logger = logging.getLogger(__name__)


class StoreGuard:
    """Detects a feature store that lost data and rebuilds it from the input topic."""

    def __init__(
        self,
        open_store: Callable[[], OnlineStore],
        kafka_conf: Mapping[str, Any],
        input_topic: str,
        group_id: str,
        labels_topic: str | None,
        labels_group_id: str | None,
        registry: Any,
        run: Callable[..., RebuildReport] = rebuild,
    ) -> None:
        self._open_store = open_store
        self._kafka_conf = dict(kafka_conf)
        self._topic, self._group = input_topic, group_id
        self._labels_topic, self._labels_group = labels_topic, labels_group_id
        self._run = run
        self._thread: threading.Thread | None = None
        self._epoch: str | None = None
        self.rebuilds = Counter(
            "fraudstream_store_rebuilds",
            "Feature store rebuilds from Kafka, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.running = Gauge(
            "fraudstream_store_rebuild_running", "1 while a store rebuild runs", registry=registry
        )

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def claim_epoch(self, store: OnlineStore) -> None:
        """Remember (creating it if absent) the store's epoch key; called at start."""
        try:
            self._epoch = self._read_epoch(store)
        except FeatureStoreUnavailable as exc:
            logger.warning("store epoch not claimed yet (%s); claimed when the store answers", exc)

    def on_store_back(self, store: OnlineStore) -> None:
        """The store answers again after an outage: did it lose its data?"""
        try:
            epoch = self._read_epoch(store)
        except FeatureStoreUnavailable:
            return
        if self._epoch is not None and epoch != self._epoch:
            logger.error("the feature store lost its data during the outage; rebuilding it")
            self.start("store emptied")
        self._epoch = epoch

    def on_assigned(
        self, consumer: Consumer, store: OnlineStore, parts: list[TopicPartition]
    ) -> None:
        """Compare the store's marks with the committed offsets of newly owned partitions."""
        try:
            committed = consumer.committed(parts, timeout=10)
            late = behind(store, {tp.partition: tp.offset for tp in committed}, self._topic)
        except (KafkaException, FeatureStoreUnavailable) as exc:
            logger.warning("store completeness not checked: %s", exc)
            return
        if late:
            detail = ", ".join(
                f"partition {p}: mark {m}, committed {c}" for p, (m, c) in late.items()
            )
            logger.error("the feature store is behind the committed offsets (%s)", detail)
            self.start("store behind the committed offsets")

    def start(self, why: str) -> bool:
        """Run a rebuild in the background unless one runs already."""
        if self.busy:
            return False
        self._thread = threading.Thread(
            target=self._rebuild, args=(why,), daemon=True, name="store-rebuild"
        )
        self._thread.start()
        return True

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _rebuild(self, why: str) -> None:
        self.running.set(1)
        logger.warning("store rebuild started (%s)", why)
        store = self._open_store()
        try:
            report = self._run(
                store,
                self._kafka_conf,
                self._topic,
                self._group,
                self._labels_topic,
                self._labels_group,
                echo=lambda line: logger.info("store rebuild: %s", line),
            )
        except (FraudstreamError, KafkaException) as exc:
            self.rebuilds.labels(outcome="failed").inc()
            logger.error("store rebuild failed: %s; run `fraudstream features rebuild`", exc)
        else:
            self.rebuilds.labels(outcome="done").inc()
            for line in report.lines():
                logger.warning("store rebuild: %s", line)
        finally:
            store.close()
            self.running.set(0)

    def _read_epoch(self, store: OnlineStore) -> str:
        return store.epoch(self._topic)
