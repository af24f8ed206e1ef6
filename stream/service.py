"""Assembles one ``serve`` process from its settings and runs it until told to stop."""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer

from fraudstream.features.config import redact_url
from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.local_store import OnlineStore
from fraudstream.features.local_store import open_store as open_feature_store
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.stream.alignment import PartitionAligner
from fraudstream.stream.clock import SkewTracker
from fraudstream.stream.deadletter import DeadLetters
from fraudstream.stream.decision import Rules
from fraudstream.stream.delivery import AtLeastOnce, Delivery, ExactlyOnce
from fraudstream.stream.group_order import GroupOrder, key_of
from fraudstream.stream.identity import Identity, claim
from fraudstream.stream.kafka.clients import consumer_config, producer_config
from fraudstream.stream.kafka.connection import ensure_reachable
from fraudstream.stream.kafka.limits import LIBRDKAFKA_DEFAULT, max_message_bytes
from fraudstream.stream.liveness import Liveness
from fraudstream.stream.lookahead import Lookahead
from fraudstream.stream.metrics import HealthServer, ServeMetrics
from fraudstream.stream.model_watch import ModelHolder
from fraudstream.stream.outbox import Outbox
from fraudstream.stream.pipeline import Pipeline, ScorerLike
from fraudstream.stream.planner import Planner
from fraudstream.stream.serve import Server, Topics, install_signal_handlers
from fraudstream.stream.settings import ServeSettings
from fraudstream.stream.shadow import Shadow
from fraudstream.stream.store_guard import StoreGuard

logger = logging.getLogger(__name__)


@dataclass
class Service:
    """A built serve process: the loop plus what must be closed after it."""

    server: Server
    settings: ServeSettings
    health: HealthServer | None
    store: Any
    identity: Identity

    def run(self) -> int:
        self.server.subscribe()
        # Everything loaded so far (libraries, model, settings) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks ~150k objects
        # (85 ms measured) in the middle of a batch.
        gc.collect()
        gc.freeze()
        try:
            self.server.run()
        finally:
            self.close()
        return 0

    def close(self) -> None:
        timeout = self.settings.shutdown_timeout_s
        try:
            self.server.delivery.close(timeout / 2)
        finally:
            if self.server.lookahead is not None:
                self.server.lookahead.close()
            if self.server.order is not None:
                self.server.order.close()
            self.server.consumer.close()
            self.store.close()
            if self.health is not None:
                self.health.stop()
            self.identity.release()
        logger.info("serve stopped cleanly")


def build(settings: ServeSettings, install_signals: bool = True) -> Service:
    """Validate the environment (broker, registry, model) and wire every part together."""
    conn = settings.kafka()
    logger.info(
        "starting serve",
        extra={
            "kafka": conn.redacted(),
            "redis": redact_url(settings.redis_url.get_secret_value()),
            "guarantee": settings.guarantee,
            "budget_ms": settings.budget_ms,
            "max_batch": settings.max_batch,
            "registry": str(settings.registry),
        },
    )
    ensure_reachable(conn, timeout_s=15.0)
    metrics = ServeMetrics()
    registry = Registry(settings.registry)
    config = FeatureConfig()

    def load(version: str | None) -> Scorer:
        return Scorer.load(
            registry,
            version,
            device=settings.device,
            config=config,
            threads=settings.scoring_threads,
        )

    planner = Planner(
        max_batch=settings.max_batch,
        degrade=settings.degrade,
        store_down_after_s=settings.store_timeout_ms / 1e3,
    )

    def swapped(scorer: ScorerLike) -> None:
        metrics.set_model(scorer.version, getattr(scorer, "device", "cpu"))
        planner.set_quality(scorer.rung_quality())
        if scorer.truncation_trees is None:
            logger.warning(
                "model %s has no thresholds for the truncated rung (a manifest written before "
                "they existed): that rung is off; `fraudstream models tradeoff` records them",
                scorer.version,
            )

    holder = ModelHolder(
        load=load,
        current_version=registry.current,
        poll_s=settings.model_poll_s,
        on_swap=swapped,
        on_error=lambda _v, _e: metrics.model_load_errors.inc(),
    )
    holder.start()

    def open_store() -> OnlineStore:
        return open_feature_store(
            settings.redis_url.get_secret_value(),
            settings.redis_prefix,
            config,
            customer_state=settings.customer_state,
        )

    store = open_store()
    metrics.watch_customers(store)
    guard = None
    if settings.store_rebuild:
        guard = StoreGuard(
            open_store,
            conn.to_librdkafka(),
            settings.input_topic,
            settings.group_id,
            settings.labels_topic,
            settings.labels_group_id,
            metrics.registry,
        )
        guard.claim_epoch(store)
    pipeline = Pipeline(
        store=store,
        model=holder.get,
        planner=planner,
        config=config,
        marks_topic=settings.input_topic,
        on_store_back=(lambda: guard.on_store_back(store)) if guard else None,
        rules=Rules(settings.rules_review_amount, settings.rules_decline_amount),
    )
    identity = claim(settings.group_id, settings.instance_id)
    transactional = settings.guarantee == "exactly-once"
    consumer = Consumer(
        consumer_config(
            conn,
            settings.group_id,
            fetch_wait_ms=settings.effective_fetch_wait_ms(),
            fetch_min_bytes=settings.fetch_min_bytes,
        )
    )
    stopping = threading.Event()
    planner.commit_in_path = transactional
    letters = _dead_letters(settings, metrics)
    delivery = _delivery(settings, consumer, letters, identity, stopping, planner)
    shadow = None
    if settings.shadow:
        shadow = Shadow(load(settings.shadow), settings.shadow_topic)
    server = Server(
        consumer=consumer,
        delivery=delivery,
        pipeline=pipeline,
        models=holder,
        planner=planner,
        topics=Topics(
            settings.input_topic,
            settings.decisions_topic,
            settings.alerts_topic,
            settings.dlq_topic,
            settings.shadow_topic if shadow else None,
        ),
        budget_ms=settings.budget_ms,
        metrics=metrics,
        shadow=shadow,
        max_pending=settings.max_pending,
        guard=guard,
        skew=SkewTracker(tolerance_ms=settings.clock_skew_tolerance_ms),
        liveness=Liveness(settings.liveness_timeout_s),
        stopping=stopping,
        outbox=Outbox(
            limit=settings.max_batch,
            interval_s=settings.transaction_interval_ms / 1e3 if transactional else 0.0,
        ),
        lookahead=Lookahead() if settings.store_lookahead else None,
        aligner=_aligner(settings),
        order=_group_order(settings, store, config),
    )
    metrics.watch_lookahead(server.lookahead)
    metrics.watch_aligner(server.aligner)
    metrics.watch_group_order(server.order)
    health = None
    if settings.metrics_port:
        health = HealthServer(
            metrics, server.ready, settings.metrics_port, server.liveness.check
        ).start()
    if install_signals:
        install_signal_handlers(server.stopping, settings.shutdown_timeout_s)
    return Service(server, settings, health, store, identity)


def _aligner(settings: ServeSettings) -> PartitionAligner | None:
    return PartitionAligner() if settings.align_partitions else None


def _group_order(
    settings: ServeSettings, store: OnlineStore, config: FeatureConfig
) -> GroupOrder | None:
    if not (settings.align_partitions and settings.group_order):
        return None
    if settings.group_order_slack_s >= config.delay_s:
        logger.warning(
            "--group-order-slack-s %s is not below the label delay (%d s): a process that "
            "far ahead computes terminal windows without records of the processes behind",
            settings.group_order_slack_s,
            config.delay_s,
        )
    key = key_of(settings.redis_prefix, settings.group_id, settings.input_topic)
    return GroupOrder(store.eval_on_key, key, int(settings.group_order_slack_s * 1000)).start()


def _dead_letters(settings: ServeSettings, metrics: ServeMetrics) -> DeadLetters:
    """The dead-letter topic with its broker-side size limit, so that anything the broker
    accepted on the input topic can be dead-lettered (whole when it fits, else cut down)."""
    limit = max_message_bytes(settings.kafka(), settings.dlq_topic)
    logger.info("dead letters go to %s, up to %d bytes each", settings.dlq_topic, limit)
    return DeadLetters(
        settings.dlq_topic,
        limit,
        on_lost=lambda _letter, _why: metrics.dead_letters_lost.inc(),
        on_truncated=lambda _letter: metrics.dead_letters_truncated.inc(),
    )


def _delivery(
    settings: ServeSettings,
    consumer: Consumer,
    letters: DeadLetters,
    identity: Identity,
    stopping: threading.Event,
    planner: Planner,
) -> Delivery:
    conn = settings.kafka()
    sized: dict[str, Any] = {"message.max.bytes": max(LIBRDKAFKA_DEFAULT, letters.limit)}
    if settings.guarantee == "exactly-once":
        transactional_id = settings.transactional_id or identity.transactional_id
        logger.info("exactly-once as transactional id %s", transactional_id)
        conf = producer_config(
            conn,
            transactional_id,
            # the coordinator answers CONCURRENT_TRANSACTIONS while it writes the previous
            # transaction's markers, and librdkafka retries AddOffsetsToTxn after this
            # backoff: 3 ms instead of 10 halves send_offsets_to_transaction (median 13 to
            # 6 ms on the local broker); the backoff doubles at each retry, and a cap of 10 ms
            # instead of 200 keeps a slow spell of the coordinator from costing a commit tens
            # of ms (commit p99 27.6 and 26.1 -> 21.2 and 16.9 ms in serve at 2,000/s)
            **{
                "transaction.timeout.ms": settings.transaction_timeout_ms,
                "retry.backoff.ms": 3,
                "retry.backoff.max.ms": 10,
            },
            **sized,
        )
        return ExactlyOnce(
            Producer(conf),
            consumer,
            letters,
            make_producer=lambda: Producer(conf),
            stopping=stopping,
            on_commit=lambda n, seconds: planner.observe("commit", n, seconds),
        )
    return AtLeastOnce(
        Producer(producer_config(conn, None, **sized)),
        consumer,
        letters,
        commit_interval_s=settings.commit_interval_ms / 1e3,
        stopping=stopping,
    )
