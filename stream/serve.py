"""The ``serve`` loop: consume → decode → plan → score → produce → commit, batch after batch.

One thread, one batch at a time. Exactly-once commits each transaction on a helper thread
while the loop scores on; batches scored meanwhile wait in the ``Outbox`` and go into the
next transaction together. At-least-once leaves a batch's outputs in flight while the next
one is scored and commits offsets as acknowledgements arrive. Before partitions are revoked the
delivery is drained (everything in flight acknowledged, its offsets committed), so a
rebalance hands over no acknowledged-but-uncommitted work; revoked partitions only lose
records still waiting in the buffer, which their next owner reads again.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, TopicPartition

from fraudstream.features.kafka import next_offsets
from fraudstream.features.schema import DecodeLimits, DecodeResult, decode_transactions
from fraudstream.stream.alignment import PartitionAligner
from fraudstream.stream.clock import SkewTracker
from fraudstream.stream.deadletter import dead_letter
from fraudstream.stream.decision import REVIEW
from fraudstream.stream.delivery import BatchAborted, Delivery
from fraudstream.stream.exceptions import FatalKafkaError
from fraudstream.stream.group_order import (
    MAX_HOLD_S,
    GroupOrder,
    Limits,
    allowed,
    event_time_of,
    state_of,
)
from fraudstream.stream.kafka.consume import take_queued
from fraudstream.stream.liveness import Liveness
from fraudstream.stream.lookahead import Ahead, Lookahead
from fraudstream.stream.metrics import ServeMetrics
from fraudstream.stream.model_watch import ModelHolder
from fraudstream.stream.outbox import Outbox
from fraudstream.stream.pipeline import Features, Pipeline, ScoredBatch, flag_names
from fraudstream.stream.planner import Planner
from fraudstream.stream.watermark import Watermarks

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.1
"""How long an idle loop waits for input before it settles what is in flight."""
HELD_POLL_S = 0.002
"""The same while the outbox holds batches waiting for a commit to finish."""
START_OFFSETS_TIMEOUT_S = 1.0
"""Longest the loop waits for newly assigned partitions' committed offsets (the aligner's)."""


@dataclass(frozen=True)
class Topics:
    """Where serve reads and writes."""

    input: str
    """Transactions."""
    decisions: str
    """Decisions."""
    alerts: str
    """Review and decline alerts."""
    dlq: str
    """Dead letters."""
    shadow: str | None = None
    """Challenger scores (only with a shadow model)."""


@dataclass
class Server:
    """One serve process: owns its consumer, its delivery and the scoring pipeline."""

    consumer: Consumer
    delivery: Delivery
    pipeline: Pipeline
    models: ModelHolder
    planner: Planner
    topics: Topics
    budget_ms: float
    metrics: ServeMetrics
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    shadow: Any = None
    max_pending: int = 200_000
    guard: Any = None
    """``StoreGuard`` checking the store's completeness at assignment (None: off)."""
    skew: SkewTracker = field(default_factory=SkewTracker)
    """Producers' clock skew per partition: where each record's budget starts."""
    liveness: Liveness = field(default_factory=Liveness)
    """Heartbeat of the loop (``/healthz``)."""
    watermarks: Watermarks = field(default_factory=Watermarks)
    """Event-time watermark per partition (the store trims and flags against it)."""
    wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    stopping: threading.Event = field(default_factory=threading.Event)
    assigned: set[tuple[str, int]] = field(default_factory=set)
    batches: int = 0
    _buffer: deque[tuple[Any, int, int]] = field(default_factory=deque)
    """Consumed records, each with the wall ms at which the consumer handed it over and
    the wall ms at which its budget started (``fraudstream.stream.clock``)."""
    _lag_at: float = 0.0
    _to_check: list[TopicPartition] = field(default_factory=list)
    _to_start: list[TopicPartition] = field(default_factory=list)
    """Newly assigned partitions whose start offsets the aligner has not been told yet."""
    outbox: Outbox = field(default_factory=lambda: Outbox(limit=1024))
    """Batches scored while the previous transaction was committing (exactly-once)."""
    lookahead: Lookahead | None = None
    """With more input waiting, the next batch's store call runs while the loop finishes
    the one before (``fraudstream.stream.lookahead``); None: each batch in turn."""
    aligner: PartitionAligner | None = None
    """Partitions with a backlog are taken in timestamp order (``fraudstream.stream.alignment``);
    None: in the order the consumer hands records over."""
    order: GroupOrder | None = None
    """The group's processes kept within a bound of one another's timestamps
    (``fraudstream.stream.group_order``; only with an aligner); None: each on its own."""
    _order_at: float = 0.0
    _held_since: float | None = None
    _held_floor: float = math.inf

    def subscribe(self) -> None:
        self.consumer.subscribe(
            [self.topics.input],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def ready(self) -> bool:
        return bool(self.assigned) and self.models.get() is not None

    def run(self, max_batches: int | None = None) -> None:
        """Process until ``stopping`` is set (or ``max_batches`` batches, for tests)."""
        try:
            self._loop(max_batches)
        finally:
            if self.lookahead is not None:  # left by an error: its records come again
                self.lookahead.drop()
            if self.outbox:  # what was scored last goes out before the delivery closes
                try:
                    self._publish()
                except BatchAborted as exc:
                    logger.warning("%s", exc)

    def _loop(self, max_batches: int | None) -> None:
        while not self.stopping.is_set():
            if max_batches is not None and self.batches >= max_batches:
                break
            self.liveness.beat("consuming")
            self.models.poll()
            if self.pipeline.pending_count >= self.max_pending:
                self._finish_ahead()
                self._hold_back()
                continue
            self._fill()
            self._report_order()
            if self._to_check:  # outside the rebalance callback: it makes store calls
                self._finish_ahead()
                parts, self._to_check = self._to_check, []
                self.guard.on_assigned(self.consumer, self.pipeline.store, parts)
            if self._buffer:
                self._step()
            else:
                self._finish_ahead()
                self._settle()
            self._report_lag()
        self._finish_ahead()
        logger.info("stopping: last batch done")

    def _fill(self) -> None:
        room = self.planner.max_batch * 2 - len(self._buffer)
        if room <= 0:
            return
        # block briefly for a first message only when there is nothing else to do; while
        # the outbox holds scored batches, only a moment, so that they go out as soon as
        # they are due
        idle_wait = HELD_POLL_S if self.outbox else IDLE_POLL_S
        busy = self._buffer or (self.lookahead is not None and self.lookahead.batch is not None)
        msgs = take_queued(self.consumer, room, 0.0 if busy else idle_wait)
        fetched = self.wall_ms()
        good = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    msg = f"the Kafka consumer hit a fatal error ({err.name()}: {err.str()})"
                    raise FatalKafkaError(msg)
                logger.warning("consumer error: %s", err.str())
        if not good and not self._to_start and (self.aligner is None or self.aligner.idle):
            return
        # the high watermarks (librdkafka's cache) once per fill: skew tracker and aligner
        parts = np.asarray(sorted(p for _, p in self.assigned), dtype=np.int64)
        ends = self._end_offsets(self.topics.input, parts)
        if good:
            self._take(good, fetched, ends)
        if self._to_start:  # outside the rebalance callback: it asks the broker
            self._start_offsets()
        if self.aligner is not None and not self.aligner.idle:
            self._align(fetched, ends, drained=len(msgs) < room)

    def _start_offsets(self) -> None:
        """Tell the aligner where newly assigned partitions start (their committed offsets,
        else the log start, as ``auto.offset.reset=earliest``), so that a caught-up one
        holds nothing back; left unknown on an error (it then holds back at most the
        aligner's idle time)."""
        aligner = self.aligner
        parts, self._to_start = self._to_start, []
        if aligner is None:
            return
        try:  # a moment at most: unknown, a partition holds back only the idle time
            committed = self.consumer.committed(parts, timeout=START_OFFSETS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - order only, never progress
            logger.warning("start offsets of newly assigned partitions unknown: %s", exc)
            return
        for tp in committed:
            offset = tp.offset
            if offset < 0:  # nothing committed: the log start, once a fetch reported it
                offset = self.consumer.get_watermark_offsets(tp, cached=True)[0]
            if offset >= 0:
                aligner.start(tp.partition, offset)

    def _take(self, msgs: list[Any], fetched: int, ends: dict[int, int]) -> None:
        """Consumed records into the buffer (or the aligner's stagings), each with where
        its budget starts, after feeding the skew tracker."""
        n = len(msgs)
        part = np.fromiter((m.partition() for m in msgs), np.int64, n)
        offset = np.fromiter((m.offset() for m in msgs), np.int64, n)
        stamp = np.fromiter((_timestamp_ms(m, fetched) for m in msgs), np.int64, n)
        at = np.full(n, fetched, dtype=np.int64)
        self.skew.observe(part, offset, stamp, at, ends)
        items = list(
            zip(msgs, [fetched] * n, self.skew.starts(part, stamp, at).tolist(), strict=True)
        )
        if self.aligner is None:
            self._buffer.extend(items)
        else:
            self.aligner.add(items, part.tolist(), offset.tolist(), stamp.tolist())

    def _align(self, now: int, ends: dict[int, int], drained: bool) -> None:
        """Staged records that can go, into the buffer in timestamp order; partitions
        staging too much paused, and resumed once drained."""
        aligner = self.aligner
        assert aligner is not None  # noqa: S101 - the caller checked
        allow, leading = self._group_allows()
        self._buffer.extend(aligner.release(ends, now, drained, allow, leading))
        pause, resume = aligner.flow()
        if pause:
            self.consumer.pause([TopicPartition(self.topics.input, p) for p in pause])
        if resume:
            self.consumer.resume([TopicPartition(self.topics.input, p) for p in resume])

    def _report_order(self, force: bool = False) -> None:
        """This process's marks for the group (``fraudstream.stream.group_order``), at most
        once per the group order's interval unless ``force``."""
        order, aligner = self.order, self.aligner
        if order is None or aligner is None:
            return
        now = time.monotonic()
        if now < self._order_at and not force:
            return
        self._order_at = now + order.interval_s
        own = sorted(p for _, p in self.assigned)
        ends = self._end_offsets(self.topics.input, np.asarray(own, dtype=np.int64))
        caught_up = aligner.caught_up(ends)
        for p in self._unapplied():
            caught_up.pop(p, None)
        marks = {}
        for p in own:
            second = self.watermarks.mark(p)  # every record of p before it is applied
            if second is not None:
                marks[p] = (second * 1000, state_of(caught_up.get(p)))
        order.report(marks)

    def _unapplied(self) -> set[int]:
        """Partitions with records released by the aligner and not yet applied."""
        out = {m.partition() for m, _, _ in self._buffer}
        ahead = self.lookahead.batch if self.lookahead is not None else None
        if ahead is not None:
            out.update(m.partition() for m in ahead.msgs)
        return out

    def _group_allows(self) -> tuple[Callable[[Any], bool] | None, frozenset[int]]:
        """Which staged records the group lets this process take: those dated up to its
        ceiling (``fraudstream.stream.group_order``; None: any), and the partitions at the
        floor, which take at least their next record. A floor that has not moved for
        ``MAX_HOLD_S`` while this process had nothing to do is passed."""
        order = self.order
        if order is None:
            return None, frozenset()
        limits = order.limits()
        if min(limits.ceiling, limits.live_ceiling) == math.inf:
            self._held_since = None
            return None, frozenset()
        now = time.monotonic()
        if self._buffer or order.floor != self._held_floor:
            self._held_since, self._held_floor = None, order.floor
        elif self._held_since is None:
            self._held_since = now
        elif now - self._held_since > MAX_HOLD_S:
            logger.warning(
                "the group's floor has not moved for %.0f s: going on past it", MAX_HOLD_S
            )
            self.metrics.group_order_overruns.inc()
            self._held_since = None
            return None, frozenset()
        return (lambda item: _allowed(item[0], item[1], limits)), limits.at_floor

    def _end_offsets(self, topic: str, partitions: np.ndarray) -> dict[int, int]:
        ends = {}
        for p in np.unique(partitions).tolist():
            try:
                ends[p] = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), cached=True
                )[1]
            except Exception:  # noqa: BLE001, S112 - no sample this time
                continue
        return ends

    def _step(self) -> None:
        now = self.wall_ms()
        arrival = np.fromiter((s for _, _, s in self._buffer), np.int64, len(self._buffer))
        slacks = (arrival + self.budget_ms - now) / 1e3
        plan = self.planner.plan(slacks, len(self._buffer), self.models.get() is not None)
        taken = [self._buffer.popleft() for _ in range(plan.size)]
        msgs = [m for m, _, _ in taken]
        fetched = np.fromiter((f for _, f, _ in taken), np.int64, len(taken))
        try:
            if self._behind():
                self._process_ahead(msgs, arrival[: plan.size], fetched, plan, now)
            else:  # caught up: the batch ahead first (an abort skips this one), then in turn
                self._conclude_pending()
                self._process(msgs, arrival[: plan.size], fetched, plan, now)
        except BatchAborted as exc:
            self._aborted(exc)
        self.batches += 1

    def _behind(self) -> bool:
        """Whether this batch's store call goes ahead (``fraudstream.stream.lookahead``):
        serve is still a full batch behind after taking it. A stream keeping up goes batch
        by batch: overlapping adds the next batch's decoding and the threads' hand-offs to
        each batch's latency, and once caught up serve would otherwise never leave it (the
        input waiting is rarely empty at a steady rate)."""
        return self.lookahead is not None and len(self._buffer) >= self.planner.max_batch

    def _aborted(self, exc: BatchAborted) -> None:
        """The delivery aborted and rewound: what was taken or scored comes again."""
        logger.warning("%s", exc)
        self._rewound()
        self.outbox.discard()
        if self.lookahead is not None:
            self.lookahead.drop()

    def _process(
        self, msgs: list[Any], arrival: np.ndarray, fetched: np.ndarray, plan: Any, started: int
    ) -> None:
        """One batch start to finish: decode, features, model, outputs."""
        decoded, decode_ms, next_offsets, marks = self._decode(msgs, started)
        self.liveness.beat("feature store and model")
        scored = None
        if len(decoded.batch):
            watermark = self._watermark(msgs, decoded)
            scored = self.pipeline.run(decoded.batch, plan, marks, watermark)
        else:
            self.pipeline.mark(marks)
        self._conclude(msgs, arrival, fetched, started, decoded, decode_ms, next_offsets, scored)
        self.pipeline.flush_pending()
        self.metrics.store_pending.set(self.pipeline.pending_count)

    def _process_ahead(
        self, msgs: list[Any], arrival: np.ndarray, fetched: np.ndarray, plan: Any, started: int
    ) -> None:
        """This batch's store call goes to the helper thread; the batch ahead (if any) is
        then scored and emitted while the store works (``fraudstream.stream.lookahead``)."""
        lookahead = self.lookahead
        assert lookahead is not None  # noqa: S101 - the caller checked
        decoded, decode_ms, next_offsets, marks = self._decode(msgs, started)
        earlier = lookahead.take()
        done = None if earlier is None else (earlier, self._features_of(earlier))
        # the helper is idle from here until the next submit: the store is the loop's
        if len(decoded.batch):
            watermark = self._watermark(msgs, decoded)
            batch, pipeline = decoded.batch, self.pipeline
            future = lookahead.submit(lambda: pipeline.features(batch, plan, marks, watermark))
            lookahead.batch = Ahead(
                msgs, arrival, fetched, plan, started, decoded, decode_ms, next_offsets, future
            )
            if done is not None:
                lookahead.overlapped += 1
                self._conclude_ahead(*done)
        else:  # nothing to ask the store: in turn, after the one ahead
            if done is not None:
                self._conclude_ahead(*done)
            self.pipeline.mark(marks)
            self._conclude(msgs, arrival, fetched, started, decoded, decode_ms, next_offsets, None)
        self.metrics.store_pending.set(self.pipeline.pending_count)

    def _finish_ahead(self) -> None:
        """Finish the batch ahead, if any: before the loop goes idle, touches the store
        itself, hands partitions over or stops."""
        try:
            self._conclude_pending()
        except BatchAborted as exc:
            self._aborted(exc)

    def _conclude_pending(self) -> None:
        """Score and emit the batch ahead, if any (its abort raises ``BatchAborted``)."""
        ahead = self.lookahead.take() if self.lookahead is not None else None
        if ahead is not None:
            self._conclude_ahead(ahead, self._features_of(ahead))

    def _features_of(self, ahead: Ahead) -> Features:
        self.liveness.beat("feature store and model")
        return Lookahead.wait(ahead)

    def _conclude_ahead(self, ahead: Ahead, features: Features) -> None:
        scored = self.pipeline.finish(ahead.decoded.batch, ahead.plan, features)
        self._conclude(
            ahead.msgs,
            ahead.arrival,
            ahead.fetched,
            ahead.started,
            ahead.decoded,
            ahead.decode_ms,
            ahead.offsets,
            scored,
        )

    def _decode(
        self, msgs: list[Any], started: int
    ) -> tuple[DecodeResult, float, list[TopicPartition], dict[int, int]]:
        """The decoded batch, its decoding time, the offsets to commit after it and the
        same as the store's per-partition offset marks."""
        t0 = time.perf_counter()
        decoded = decode_transactions([m.value() for m in msgs], self.limits, now_ms=started)
        decode_ms = (time.perf_counter() - t0) * 1e3
        self.planner.observe("decode", len(msgs), decode_ms / 1e3)
        offsets = next_offsets(msgs)
        return decoded, decode_ms, offsets, {tp.partition: tp.offset for tp in offsets}

    def _watermark(self, msgs: list[Any], decoded: DecodeResult) -> np.ndarray:
        ok_rows = np.asarray(decoded.ok_index, dtype=np.int64)
        parts = np.fromiter((msgs[i].partition() for i in ok_rows), np.int64, len(ok_rows))
        return self.watermarks.take(parts, decoded.batch.event_time_ms)

    def _conclude(
        self,
        msgs: list[Any],
        arrival: np.ndarray,
        fetched: np.ndarray,
        started: int,
        decoded: DecodeResult,
        decode_ms: float,
        next_offsets: list[TopicPartition],
        scored: ScoredBatch | None,
    ) -> None:
        """The batch's outputs into the outbox, published when due."""
        scored_at = self.wall_ms()

        def write() -> None:
            for index, error in decoded.errors:
                self.delivery.dead_letter(dead_letter(msgs[index], error))
                self.metrics.dead_letters.labels(code=error.code).inc()
            if scored is not None:
                ok = np.asarray(decoded.ok_index, dtype=np.int64)
                extra = {"queue_start": float(started), "decode": decode_ms}
                self._emit(scored, arrival[ok], fetched[ok], extra, scored_at)
            if scored is not None and self.shadow is not None and self._slack_left(scored):
                self.shadow.score(scored, self.delivery, self.wall_ms())

        deadline = float(arrival.min()) + self.budget_ms if len(arrival) else math.inf
        self.outbox.add(next_offsets, len(msgs), write, deadline)
        if not self.outbox.should_wait(self.delivery, self.wall_ms(), self._publish_ms()):
            self._publish()
        else:
            self.outbox.stage(self.delivery, self.liveness)
        self.metrics.transactions.inc(len(msgs))
        self.metrics.batch_size.observe(len(msgs))

    def _publish_ms(self) -> float:
        return self.planner.publish_cost(self.outbox.records) * 1e3

    def _publish(self) -> None:
        """Produce and commit every batch the outbox holds (see ``fraudstream.stream.outbox``)."""
        self.outbox.publish(self.delivery, self.liveness, self.metrics.commit_seconds.observe)

    def _settle(self) -> None:
        try:
            # idle: what the outbox holds goes out once it is due (the commit before it done,
            # the transaction interval passed or a deadline near; the loop polls briefly
            # meanwhile, see _fill), without waiting for more input
            if self.outbox and self.outbox.due(self.delivery, self.wall_ms(), self._publish_ms()):
                self._publish()
            elif self.outbox:  # the commit before it is done: its acknowledgements start now
                self.outbox.stage(self.delivery, self.liveness)
            self.delivery.settle()
        except BatchAborted as exc:
            logger.warning("%s", exc)
            self._rewound()

    def _rewound(self) -> None:
        """The consumer was rewound to the last commit: what it had handed over comes again."""
        self._buffer.clear()
        if self.aligner is not None:  # every partition starts again from its commit
            self.aligner.reset(self.wall_ms())
            self._to_start = [TopicPartition(t, p) for t, p in sorted(self.assigned)]

    def _slack_left(self, scored: ScoredBatch) -> bool:
        """The challenger runs only when the next waiting record can afford it."""
        if not self._buffer:
            return True
        slack_ms = self._buffer[0][2] + self.budget_ms - self.wall_ms()
        return slack_ms / 1e3 > 2 * self.planner.costs["score_full"].predict(len(scored.codes))

    def _emit(
        self,
        scored: ScoredBatch,
        arrival: np.ndarray,
        fetched: np.ndarray,
        extra: dict[str, float],
        scored_at: int,
    ) -> None:
        t0 = time.perf_counter()
        queue_start = int(extra.pop("queue_start"))
        queue = np.maximum(queue_start - arrival, 0).astype(np.float64)
        kafka = np.clip(fetched - arrival, 0, queue).astype(np.float64)
        commit_ms = self.planner.expected_commit_s(len(scored.codes)) * 1e3
        if self.planner.commit_in_path:  # visible after the wait for this transaction too
            commit_ms += max(self.wall_ms() - scored_at, 0) + self.outbox.hold_ms
        rows, total = scored.rows(
            arrival, self.budget_ms, scored_at, extra, queue, kafka, round(commit_ms, 3)
        )
        produce, dumps = self.delivery.produce, orjson.dumps
        decisions, alerts = self.topics.decisions, self.topics.alerts
        alert = (scored.codes >= REVIEW).tolist()
        for i, row in enumerate(rows):
            key = row["customer_id"].encode()
            value = dumps(row)
            produce(decisions, key, value, timestamp=scored_at)
            if alert[i]:
                produce(alerts, key, value, timestamp=scored_at)
        m = self.metrics
        m.e2e.observe_many(total / 1e3)
        missed = int(np.count_nonzero(total > self.budget_ms))
        if missed:
            m.deadline_missed.inc(missed)
        self._count(scored)
        self.delivery.poll()
        self.planner.observe("produce", len(rows), time.perf_counter() - t0)

    def _count(self, scored: ScoredBatch) -> None:
        m = self.metrics
        codes, counts = np.unique(scored.codes, return_counts=True)
        for code, count in zip(codes, counts, strict=True):
            m.decisions.labels(decision=("approve", "review", "decline")[code]).inc(int(count))
        if scored.rung is not None:
            m.degraded.labels(rung=scored.rung).inc(len(scored.codes))
        for names in flag_names(scored.flags).values():
            for name in names:
                m.flagged.labels(flag=name).inc()
        for stage, ms in scored.stage_ms.items():
            m.stage.labels(stage=stage).observe(ms / 1e3)

    def _hold_back(self) -> None:
        """The store is away and the backlog is full: stop consuming until it drains."""
        parts = [TopicPartition(t, p) for t, p in self.assigned]
        self.consumer.pause(parts)
        while not self.stopping.is_set() and not self.pipeline.flush_pending():
            self.liveness.beat("paused: waiting for the feature store")
            self.consumer.consume(1, timeout=0.2)  # keeps the group membership alive
        held = self.aligner.paused if self.aligner is not None else frozenset()
        self.consumer.resume([tp for tp in parts if tp.partition not in held])

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now < self._lag_at:
            return
        self._lag_at = now + 5.0
        for topic, partition in list(self.assigned):
            tp = TopicPartition(topic, partition)
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                pos = self.consumer.position([tp])[0].offset
            except Exception:  # noqa: BLE001, S112 - lag is best-effort telemetry
                continue
            if high >= 0 and pos >= 0:
                # records staged for timestamp order are taken but not yet processed
                staged = self.aligner.staged(partition) if self.aligner is not None else 0
                lag = max(high - pos, 0) + staged
                self.metrics.lag.labels(partition=str(partition)).set(lag)
        for partition, correction in self.skew.corrections().items():
            self.metrics.clock_skew.labels(partition=str(partition)).set(-correction / 1e3)

    def _on_assign(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in parts}
        if self.aligner is not None:
            self.aligner.assign([p.partition for p in parts], self.wall_ms())
            self._to_start += [TopicPartition(p.topic, p.partition) for p in parts]
        if self.guard is not None:
            self._to_check += [TopicPartition(p.topic, p.partition) for p in parts]
        logger.info("partitions assigned", extra={"partitions": sorted(p.partition for p in parts)})

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._finish_ahead()  # its outputs go out with the rest, before the hand-over
        try:  # hand over with every acknowledged decision's offset committed
            if self.outbox:
                self._publish()
            self.delivery.drain()
        except BatchAborted as exc:
            logger.warning("%s", exc)
        gone = {(p.topic, p.partition) for p in parts}
        self.assigned -= gone
        self._buffer = deque(
            (m, f, a) for m, f, a in self._buffer if (m.topic(), m.partition()) not in gone
        )
        if self.aligner is not None:
            self.aligner.revoke([p for _, p in gone])
            self._to_start = [tp for tp in self._to_start if (tp.topic, tp.partition) not in gone]
            self._report_order(force=True)  # the partitions gone are no longer reported
        for _, partition in gone:
            self.skew.forget(partition)
            self.watermarks.forget(partition)
        # customers held in this process (--customer-state local): another owner may now
        # write them; they are read again from their logs when seen next
        forget = getattr(self.pipeline.store, "forget", None)
        if callable(forget):
            forget()
        self.metrics.lag.clear()  # refilled for the partitions still owned within 5 s
        logger.info("partitions revoked", extra={"partitions": sorted(p for _, p in gone)})


def _timestamp_ms(msg: Any, now: int) -> int:
    kind, ts = msg.timestamp()
    return int(ts) if kind != 0 and ts > 0 else now


def _allowed(msg: Any, fetched: int, limits: Limits) -> bool:
    kind, written = msg.timestamp()
    written = None if kind == TIMESTAMP_NOT_AVAILABLE else written
    return allowed(event_time_of(msg.value()), written, fetched, limits)


def install_signal_handlers(stopping: threading.Event, shutdown_timeout_s: float) -> None:
    """SIGTERM / SIGINT: finish the batch and stop; past the bound, exit hard."""

    def handler(signum: int, _frame: object) -> None:
        logger.info("signal %d: finishing the current batch", signum)
        stopping.set()
        timer = threading.Timer(shutdown_timeout_s, _force_exit)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _force_exit() -> None:
    import os

    logger.error("graceful stop exceeded its bound; exiting")
    os._exit(3)
