"""The faust app of the label worker: topics, the KPI table, the agents and the web views.

faust is untyped; everything faust hands over is turned into ``RawMessage`` records here,
and the work itself is ``LabelPipeline`` and ``KpiTable``.

Agents (one consumer group, ``group_id``):

- ``labels``: ``fraud.labels`` in batches → malformed to the dead-letter topic, the rest to
  the store (retrying while it is down) and to the join topic; acked only after all of it.
- ``fraud.decisions`` (keyed by customer) → the join topic, partitioned by transaction id,
  so a transaction's decision and label meet in one partition: not an agent, but
  ``DecisionForwarder`` on a thread (group ``<group_id>-decisions``), started with the app
  once its tables are recovered.
- ``kpi-join``: the join topic → the KPI table (changelog ``<group_id>-kpi-changelog``).

A timer checks whether labels stopped while decisions flow
(``fraudstream.features.labels.freshness``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from mode import CrashingSupervisor, Service

from fraudstream.features.labels import records, web
from fraudstream.features.labels.applier import LabelStore, LabelWriter
from fraudstream.features.labels.credentials import broker_credentials, broker_urls
from fraudstream.features.labels.deadletter import Header, Source, own_headers
from fraudstream.features.labels.faust_fixes import LabelFaustApp
from fraudstream.features.labels.forwarder import DecisionForwarder, join_topic_of
from fraudstream.features.labels.freshness import LabelFreshness
from fraudstream.features.labels.kpi_table import EventHourWindow, KpiTable
from fraudstream.features.labels.metrics import LabelMetrics
from fraudstream.features.labels.pipeline import LabelPipeline, RawMessage, Send
from fraudstream.features.labels.settings import LabelSettings

logger = logging.getLogger(__name__)


@dataclass
class LabelApp:
    """The assembled worker."""

    app: Any
    """The ``faust.App``."""
    pipeline: LabelPipeline
    """Batch steps."""
    kpis: KpiTable
    """The KPI join."""
    metrics: LabelMetrics
    """Prometheus metrics."""
    freshness: LabelFreshness
    """When labels last arrived, and whether they stopped."""
    forwarder: DecisionForwarder
    """Decisions to the join topic."""


def build_app(settings: LabelSettings, store: LabelStore) -> LabelApp:
    """The faust app for ``settings``, writing labels to ``store``."""
    app = LabelFaustApp(settings.group_id, **_app_options(settings))
    labels = _raw_topic(app, settings.labels_topic)
    dlq = _raw_topic(app, settings.labels_dlq_topic)
    join = app.topic(
        join_topic_of(settings),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=True,
        partitions=settings.kpi_partitions,
        replicas=settings.replication_factor,
    )
    table = app.Table("kpi", default=None, partitions=settings.kpi_partitions)
    kpis = KpiTable(
        table.using_window(EventHourWindow()),
        settings.kpi_retention_days * 86_400,
        held=lambda: _held(app, join_topic_of(settings)),
    )
    table.on_recover(kpis.reindex)
    freshness = LabelFreshness(
        settings.labels_stale_after_s, held=lambda: _held(app, settings.labels_topic)
    )
    metrics = LabelMetrics(lambda: kpis.hours(settings.kpi_metrics_hours), freshness)
    writer = LabelWriter(
        store, settings.retry_initial_s, settings.retry_max_s, on_retry=metrics.store_retries.inc
    )
    pipeline = LabelPipeline(
        writer, metrics, _sender(dlq), _sender(join), settings.kpi_partitions, freshness
    )
    _add_agents(app, settings, pipeline, kpis, labels, join)
    forwarder = DecisionForwarder(settings, metrics, freshness)
    app.service(_forwarding(app, forwarder))
    app.timer(_check_every_s(settings.labels_stale_after_s), name="label-freshness")(
        _checker(freshness)
    )
    web.add_views(app, kpis, metrics, forwarder)
    return LabelApp(app, pipeline, kpis, metrics, freshness, forwarder)


def _forwarding(app: Any, forwarder: DecisionForwarder) -> type[Service]:
    """A service that runs ``forwarder`` while the app runs; its failure crashes the app (the
    worker then stops, naming it)."""

    class DecisionForwarding(Service):
        async def on_start(self) -> None:
            loop = asyncio.get_running_loop()

            def crash(exc: BaseException) -> None:
                asyncio.run_coroutine_threadsafe(app.crash(exc), loop)

            forwarder.start(crash)

        async def on_stop(self) -> None:
            await asyncio.to_thread(forwarder.stop)

    return DecisionForwarding


def _held(app: Any, topic: str) -> set[int] | None:
    """Partitions of ``topic`` assigned to this worker (for the join topic: whose KPI state
    it keeps); None before the app starts (asking would create its consumer)."""
    if not app.started:
        return None
    try:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
    except Exception:  # noqa: BLE001 - a scrape must not fail on a starting consumer
        return None


def _check_every_s(stale_after_s: float) -> float:
    """A tenth of the threshold, between 1 s and 30 s: the warning comes at most 10 % late."""
    return min(30.0, max(1.0, stale_after_s / 10))


def _checker(freshness: LabelFreshness) -> Callable[[], Awaitable[None]]:
    async def check_label_freshness() -> None:
        freshness.check()

    return check_label_freshness


def _raw_topic(app: faust.App, name: str) -> Any:
    """A topic read and written as bytes, untouched."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def _app_options(settings: LabelSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "broker": broker_urls(settings),
        "broker_credentials": broker_credentials(settings),
        "store": settings.table_store,
        "autodiscover": False,
        "web_enabled": True,
        "web_in_thread": False,
        "web_port": settings.web_port,
        "web_bind": settings.web_bind,
        "topic_partitions": settings.kpi_partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        "producer_acks": -1,
    }
    if settings.data_dir is not None:
        options["datadir"] = str(settings.data_dir)
    return options


def _add_agents(
    app: Any,
    settings: LabelSettings,
    pipeline: LabelPipeline,
    kpis: KpiTable,
    labels: Any,
    join: Any,
) -> None:
    batch, within = settings.max_batch, settings.batch_within_s

    async def apply_labels(stream: Any) -> None:
        async for events in stream.noack_take(batch, within=within):
            await pipeline.handle_labels([_raw(e) for e in events])
            for event in events:
                await stream.ack(event)

    async def join_kpis(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                found = records.decode(message.value)
            except ValueError as exc:  # only this worker writes the topic: a bug, not data
                logger.error(
                    "skipped join message %d@%d: %s", message.partition, message.offset, exc
                )
                continue
            kpis.process(message.partition, message.offset, found)

    # A crashed agent would leave its batch un-acked and its partitions stalled: stop the
    # whole worker instead, so a restart redelivers from the last commit.
    options = {"supervisor_strategy": CrashingSupervisor}
    app.agent(labels, **options)(apply_labels)
    app.agent(join, **options)(join_kpis)


def _raw(event: Any) -> RawMessage:
    message = event.message
    source = Source(message.topic, message.partition, message.offset)
    return RawMessage(message.key, message.value, own_headers(message.headers), source)


def _sender(topic: Any) -> Send:
    async def send(
        key: bytes | None, value: bytes | None, headers: list[Header], partition: int | None
    ) -> Awaitable[object]:
        fut: Awaitable[object] = await topic.send(
            key=key, value=value, headers=headers or None, partition=partition
        )
        return fut

    return send
