"""Decisions onto the KPI join topic, read in batches outside faust's per-event stream.

``fraud.decisions`` is keyed by customer; the join needs each transaction's decision in the
partition of its transaction id. Every decision serve writes passes here, so this hop is the
label worker's hot path: as a faust agent it cost well over 100 µs of CPU per decision
(an event, a queue hand-off and an ack each), more than serve spends scoring it. Here a
librdkafka consumer and producer do it on a thread of their own, a batch at a time.

At-least-once: a batch's offsets are stored only once every join message made from it is
acknowledged by the broker (``acks=all``), and librdkafka commits stored offsets every
second, before a partition is revoked and on close. A redelivered decision changes nothing
in the join (the first decision of a transaction wins).

The consumer group is ``<group_id>-decisions``. Where it has no offset yet for a partition
and the worker's faust group has one (a worker that read decisions through faust), it starts
there, so an upgrade does not re-read the topic's whole retention.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient

from fraudstream.features.kafka import next_offsets
from fraudstream.features.labels import records
from fraudstream.features.labels.freshness import LabelFreshness
from fraudstream.features.labels.metrics import LabelMetrics
from fraudstream.features.labels.pipeline import join_messages
from fraudstream.features.labels.settings import LabelSettings

logger = logging.getLogger(__name__)

COMMIT_INTERVAL_MS = 1000
"""How often librdkafka commits the stored offsets (and on revoke and close)."""
DELIVERY_TIMEOUT_S = 120.0
"""A join message not acknowledged in this long stops the worker (its batch is read again
after the restart)."""
WARN_EVERY_S = 60.0
"""Least time between two warnings of one kind of consumer error."""
PROGRESS_EVERY_S = 1.0
"""How often the partitions' positions and the lag gauge are brought up to date."""


def group_of(settings: LabelSettings) -> str:
    """The forwarder's consumer group."""
    return f"{settings.group_id}-decisions"


def join_topic_of(settings: LabelSettings) -> str:
    """The join topic (faust names its internal topics after the app id)."""
    return f"{settings.group_id}-kpi-join"


def decode_decisions(values: list[bytes | None]) -> tuple[list[records.JoinRecord], int]:
    """The join records of decision messages, and how many had none (see
    ``records.from_decision``)."""
    found = [records.from_decision(value) for value in values]
    usable = [record for record in found if record is not None]
    return usable, len(found) - len(usable)


class DecisionForwarder:
    """Reads ``decisions_topic``, writes the join topic; ``start``/``stop`` from any thread."""

    def __init__(
        self,
        settings: LabelSettings,
        metrics: LabelMetrics,
        freshness: LabelFreshness | None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._freshness = freshness
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._join_topic = join_topic_of(settings)
        self._failed: list[KafkaError] = []
        self._on_fatal: Callable[[BaseException], None] = _unset
        self._warned: dict[int, float] = {}
        self._noted_at = -PROGRESS_EVERY_S
        self._progress: dict[int, tuple[int | None, int | None]] = {}

    def start(self, on_fatal: Callable[[BaseException], None]) -> None:
        """Start the thread. ``on_fatal`` is called on it with what stopped it, when anything
        but ``stop`` did: the worker must stop then, since decisions no longer reach the join."""
        self._on_fatal = on_fatal
        self._thread = threading.Thread(target=self._run, name="decision-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the batch in hand (its offsets committed once delivered)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            # faust creates the join topic with the worker's partitions; a broker that creates
            # topics on first use must not make it first with its own defaults
            conn = {**self._settings.kafka().to_librdkafka(), "allow.auto.create.topics": False}
            producer = Producer(
                {
                    **conn,
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
                }
            )
            self._wait_for_join_topic(producer)
            consumer = Consumer(
                {
                    **conn,
                    "group.id": group_of(self._settings),
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": True,
                    "enable.auto.offset.store": False,
                    "auto.commit.interval.ms": COMMIT_INTERVAL_MS,
                    "session.timeout.ms": int(self._settings.session_timeout_s * 1000),
                }
            )
            legacy = LegacyOffsets(conn, self._settings.group_id)
            consumer.subscribe([self._settings.decisions_topic], on_assign=legacy.on_assign)
            while not self._stopping.is_set():
                self._step(consumer, producer)
        except BaseException as exc:  # noqa: BLE001 - handed to the worker, which stops
            self._on_fatal(exc)
        finally:
            if consumer is not None:
                consumer.close()  # commits the stored offsets

    def _wait_for_join_topic(self, producer: Producer) -> None:
        """faust creates the join topic at start; wait until the broker has it."""
        deadline = time.monotonic() + self._settings.connect_timeout_s
        while not self._stopping.is_set():
            meta = producer.list_topics(self._join_topic, timeout=5)
            topic = meta.topics.get(self._join_topic)
            if topic is not None and topic.error is None and topic.partitions:
                return
            if time.monotonic() > deadline:
                msg = f"join topic {self._join_topic} not found on the broker"
                raise RuntimeError(msg)
            time.sleep(0.2)

    def progress(self) -> list[dict[str, int | None]]:
        """Per partition held (as of the last second): the next offset to read, the end of
        the partition as last fetched, and the decisions between them (None: not known yet)."""
        return [
            {
                "partition": p,
                "position": position,
                "highwater": high,
                "lag": None if position is None or high is None else max(0, high - position),
            }
            for p, (position, high) in sorted(self._progress.items())
        ]

    def _note_progress(self, consumer: Consumer) -> None:
        """At most once a second: where each held partition stands, and the lag gauge."""
        now = time.monotonic()
        if now - self._noted_at < PROGRESS_EVERY_S:
            return
        self._noted_at = now
        assigned = consumer.assignment()
        positions = consumer.position(assigned) if assigned else []
        # a partition nothing was read from since it was assigned stands at its commit
        unread = [tp for tp in positions if tp.offset is None or tp.offset < 0]
        committed: dict[int, int | None] = {}
        if unread:
            try:
                committed = {tp.partition: tp.offset for tp in consumer.committed(unread, 2)}
            except KafkaException as exc:  # a gauge is no reason to stop: left unknown
                logger.debug("decisions: committed offsets unavailable: %s", exc)
        progress: dict[int, tuple[int | None, int | None]] = {}
        for tp in positions:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            offset = committed.get(tp.partition, tp.offset)
            position = offset if offset is not None and offset >= 0 else None
            progress[tp.partition] = (position, high if high >= 0 else None)
        self._progress = progress
        self._metrics.decisions_lag.set(
            sum(max(0, h - p) for p, h in progress.values() if p is not None and h is not None)
        )

    def _step(self, consumer: Consumer, producer: Producer) -> None:
        self._note_progress(consumer)
        batch = consumer.consume(self._settings.max_batch, self._settings.batch_within_s)
        messages = []
        for message in batch:
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.fatal():
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                self._warn(error)
        if not messages:
            return
        usable, skipped = decode_decisions([m.value() for m in messages])
        for partition, value in join_messages(usable, self._settings.kpi_partitions):
            producer.produce(
                self._join_topic, value, b"%d" % partition, partition, on_delivery=self._delivered
            )
        self._flush(producer)
        consumer.store_offsets(offsets=next_offsets(messages))
        self._metrics.decisions_forwarded.inc(len(usable))
        self.note_batch(skipped)

    def _warn(self, error: KafkaError) -> None:
        """Log a consumer error, each kind at most once a minute (a missing topic is
        reported at every metadata refresh)."""
        now = time.monotonic()
        if now - self._warned.get(error.code(), -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned[error.code()] = now
            logger.warning("decisions consumer: %s", error)

    def note_batch(self, skipped: int) -> None:
        """A batch of decisions went through, ``skipped`` of them unusable by the KPIs (they
        still show that transactions flow)."""
        if self._freshness is not None:
            self._freshness.decisions_seen()
        if skipped:
            logger.warning("%d decision(s) without a usable id, time, amount or outcome", skipped)
            self._metrics.decisions_skipped.inc(skipped)

    def _delivered(self, error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            self._failed.append(error)

    def _flush(self, producer: Producer) -> None:
        """Wait for every join message to be acknowledged; raise if one was not."""
        while producer.flush(1.0) > 0:
            pass  # librdkafka gives up on a message after message.timeout.ms itself
        if self._failed:
            error, self._failed = self._failed[0], []
            msg = f"join topic {self._join_topic}: {error}"
            raise KafkaException(KafkaError(error.code(), msg))


def _unset(exc: BaseException) -> None:
    raise exc


class LegacyOffsets:
    """Start partitions the forwarder's group never committed where the faust group was."""

    def __init__(self, conn: dict[str, Any], faust_group: str) -> None:
        self._conn = conn
        self._faust_group = faust_group

    def on_assign(self, consumer: Consumer, partitions: list[TP]) -> None:
        committed = consumer.committed(partitions, timeout=10)
        unset = [TP(tp.topic, tp.partition) for tp in committed if tp.offset == OFFSET_INVALID]
        if not unset:
            return
        found = {(tp.topic, tp.partition): tp.offset for tp in self._faust_offsets(unset)}
        seeded = [
            TP(tp.topic, tp.partition, found.get((tp.topic, tp.partition), tp.offset))
            for tp in partitions
        ]
        if any(tp.offset >= 0 for tp in seeded):
            logger.info(
                "decisions: starting %s where group %s left them",
                sorted(tp.partition for tp in seeded if tp.offset >= 0),
                self._faust_group,
            )
            consumer.assign(seeded)

    def _faust_offsets(self, unset: list[TP]) -> list[TP]:
        admin = AdminClient(self._conn)
        request = ConsumerGroupTopicPartitions(self._faust_group, unset)
        try:
            (future,) = admin.list_consumer_group_offsets([request]).values()
            result: ConsumerGroupTopicPartitions = future.result(timeout=10)
        except KafkaException as exc:
            logger.warning("decisions: cannot read group %s's offsets: %s", self._faust_group, exc)
            return []
        return [tp for tp in result.topic_partitions or [] if tp.error is None and tp.offset >= 0]
