"""The scoring core: features → model → decisions for one micro-batch, with the ladder.

Kafka-free on purpose: ``serve`` wraps it with consumers and producers, ``backtest`` feeds it
batches from a file, unit tests feed it by hand. The store, the model holder, the rules, the
planner and the clocks are injected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fraudstream.features.definitions import (
    FEATURE_NAMES,
    TRANSACTION_LEVEL_NAMES,
    FeatureConfig,
    transaction_level_features,
)
from fraudstream.features.exceptions import FeatureStoreTimeout, FeatureStoreUnavailable
from fraudstream.features.schema import TransactionBatch
from fraudstream.features.store import (
    FLAG_CAPPED,
    FLAG_CONFLICT,
    FLAG_OUTLIER,
    FeatureStore,
    OffsetTrackingStore,
    watermark_flags,
    watermarks,
)
from fraudstream.stream.decision import DECISIONS, REVIEW, Decision, Rules
from fraudstream.stream.planner import RUNG_PARTIAL, RUNG_RULES, RUNG_TRUNCATED, Plan, Planner

logger = logging.getLogger(__name__)


class ScorerLike(Protocol):
    """What the pipeline needs of ``fraudstream.models.scorer.Scorer``."""

    @property
    def version(self) -> str: ...
    @property
    def truncation_trees(self) -> int | None: ...

    def score(self, x: np.ndarray, trees: int | None = None) -> np.ndarray: ...
    def reasons(
        self, x: np.ndarray, k: int = 3, trees: int | None = None
    ) -> list[list[tuple[str, float]]]: ...
    def decide(self, scores: np.ndarray, rung: str | None = None) -> np.ndarray: ...
    def rung_quality(self) -> dict[str, float | None]: ...


@dataclass
class Features:
    """One batch's features (``Pipeline.features``), ready for the model."""

    x: np.ndarray
    """(n, 15) float32 feature matrix (NaN = missing)."""
    rung: str | None
    """``RUNG_PARTIAL`` when the store was not asked or did not answer; None otherwise."""
    flags: np.ndarray
    """(n,) int64 store flags per row."""
    stage_ms: dict[str, float]
    """Milliseconds spent so far per stage."""


@dataclass
class ScoredBatch:
    """The outcome of one micro-batch, columnar."""

    batch: TransactionBatch
    """The transactions, in input order."""
    features: np.ndarray
    """(n, 15) float32 feature matrix that was scored (NaN = missing)."""
    scores: np.ndarray
    """(n,) probabilities."""
    codes: np.ndarray
    """(n,) decision codes: 0 approve, 1 review, 2 decline."""
    reasons: dict[int, list[dict[str, Any]]]
    """Row → reasons, for review and decline rows."""
    rung: str | None
    """Rung taken: None for the full path."""
    model_version: str | None
    """Model that scored the batch."""
    stage_ms: dict[str, float]
    """Milliseconds spent per stage on the whole batch."""
    flags: np.ndarray | None = None
    """(n,) int64 store flags per row (``fraudstream.features.store.FLAG_*``); None: none raised."""

    def rows(
        self,
        arrival_ms: np.ndarray | None,
        budget_ms: float | None,
        scored_at_ms: int,
        extra_ms: dict[str, float] | None = None,
        queue_ms: np.ndarray | None = None,
        kafka_ms: np.ndarray | None = None,
        visible_after_ms: float = 0.0,
    ) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The decisions as ``fraud.decisions`` documents (the fields of ``Decision``, in
        order), built column-wise, and their total latencies in ms. Latency counts from each
        record's arrival (its Kafka timestamp, see ``fraudstream.stream.clock``); ``queue_ms`` is
        each
        record's wait before its batch started, ``kafka_ms`` the part of it until the
        consumer handed the record over (producer, broker and fetch). ``visible_after_ms``:
        how long after ``scored_at_ms`` a reader sees the decision (exactly-once: the
        expected commit, stage ``commit``), counted in ``total``."""
        stages = dict(extra_ms or {}) | self.stage_ms
        if visible_after_ms:
            stages["commit"] = visible_after_ms
        b = self.batch
        n = len(b)
        if arrival_ms is None:
            total = np.zeros(n)
        else:
            age = scored_at_ms - np.asarray(arrival_ms[:n], dtype=np.int64)
            total = age.astype(np.float64) + visible_after_ms
        met = np.ones(n, dtype=bool) if budget_ms is None else total <= budget_ms
        totals, mets = total.tolist(), met.tolist()
        queues = queue_ms.tolist() if queue_ms is not None else None
        kafkas = kafka_ms.tolist() if kafka_ms is not None else None
        amounts, times = b.amount.tolist(), b.event_time_ms.tolist()
        scores, labels = self.scores.tolist(), [DECISIONS[c] for c in self.codes.tolist()]
        reasons = self.reasons
        none: list[Any] = []  # shared by the rows without reasons or flags; never mutated
        flagged = flag_names(self.flags)
        version, rung = self.model_version, self.rung
        out = []
        for i in range(n):
            latency = {"total": totals[i], **stages}
            if queues is not None:
                latency["queue"] = queues[i]
            if kafkas is not None:
                latency["kafka"] = kafkas[i]
            out.append(
                {
                    "transaction_id": b.transaction_id[i],
                    "customer_id": b.customer_id[i],
                    "terminal_id": b.terminal_id[i],
                    "amount": amounts[i],
                    "event_time": times[i],
                    "score": scores[i],
                    "decision": labels[i],
                    "model_version": version,
                    "reasons": reasons.get(i, none) if reasons else none,
                    "latency_ms": latency,
                    "budget_ms": budget_ms,
                    "deadline_met": mets[i],
                    "degraded": rung,
                    "scored_at": scored_at_ms,
                    "flags": flagged.get(i, none),
                }
            )
        return out, total

    def decisions(
        self,
        arrival_ms: np.ndarray | None,
        budget_ms: float | None,
        scored_at_ms: int,
        extra_ms: dict[str, float] | None = None,
    ) -> list[Decision]:
        """One Decision per row (see ``rows``)."""
        rows, _ = self.rows(arrival_ms, budget_ms, scored_at_ms, extra_ms)
        return [Decision(**row) for row in rows]


@dataclass
class Pipeline:
    """Runs micro-batches through the ladder and keeps the store in step with the input."""

    store: FeatureStore
    """Online (Redis) or in-process store."""
    model: Callable[[], ScorerLike | None]
    """Returns the model to use now (None: rules only)."""
    planner: Planner
    """Cost model, fed with every stage's timing."""
    rules: Rules = field(default_factory=Rules)
    """Rule fallback."""
    config: FeatureConfig = field(default_factory=FeatureConfig)
    """Feature definitions (for the transaction-level features of the partial rung)."""
    perf: Callable[[], float] = time.perf_counter
    """Monotonic clock for stage timings."""
    marks_topic: str | None = None
    """Input topic whose per-partition offset marks ride with every store call (serve);
    None: no marks (backtests, stores without ``OffsetTrackingStore``)."""
    pending: list[tuple[TransactionBatch, dict[int, int]]] = field(default_factory=list)
    """Transactions (and their offset marks) decided without the store, to apply once it
    answers, in order."""
    on_store_back: Callable[[], None] | None = None
    """Called when the store answers again after a failed call (serve checks whether it
    lost its data meanwhile)."""
    _retry_at: float = 0.0
    _backoff_s: float = 0.05
    _down: bool = False

    @property
    def pending_count(self) -> int:
        return sum(len(b) for b, _ in self.pending)

    def run(
        self,
        batch: TransactionBatch,
        plan: Plan,
        offsets: Mapping[int, int] | None = None,
        watermark_s: np.ndarray | None = None,
    ) -> ScoredBatch:
        """Score one batch. ``offsets`` (partition -> next offset) are the input marks the
        store records with the batch: everything below them has been applied.
        ``watermark_s``: each row's partition watermark (``fraudstream.stream.watermark``), NaN or
        None
        where there is none."""
        return self.finish(batch, plan, self.features(batch, plan, offsets, watermark_s))

    def features(
        self,
        batch: TransactionBatch,
        plan: Plan,
        offsets: Mapping[int, int] | None = None,
        watermark_s: np.ndarray | None = None,
    ) -> Features:
        """The first half of ``run``: the batch's features, from the store or (the store
        away, or the plan says so) the partial rung's. The only half that calls the store;
        serve may run it on a helper thread (``fraudstream.stream.lookahead``)."""
        stage_ms: dict[str, float] = {}
        x, rung, flags = self._features(batch, plan, stage_ms, dict(offsets or {}), watermark_s)
        return Features(x, rung, flags, stage_ms)

    def finish(self, batch: TransactionBatch, plan: Plan, features: Features) -> ScoredBatch:
        """The second half of ``run``: the model (or the rules) on ``features``."""
        x, rung, flags, stage_ms = features.x, features.rung, features.flags, features.stage_ms
        scorer = self.model()
        if scorer is None or plan.rung == RUNG_RULES:
            scored = self._rules(batch, x, stage_ms)
            scored.flags = flags
            return scored
        # partial features: every tree (the rung is the missing features); truncated: the
        # first trees, with that rung's own thresholds and reasons
        trees = scorer.truncation_trees if plan.rung == RUNG_TRUNCATED and rung is None else None
        if trees:
            rung = RUNG_TRUNCATED
        t0 = self.perf()
        scores = scorer.score(x, trees=trees)
        codes = np.asarray(scorer.decide(scores, rung), dtype=np.int8)
        self._timed("score_truncated" if trees else "score_full", len(batch), t0, stage_ms, "score")
        reasons = self._reasons(scorer, x, codes, stage_ms, trees)
        return ScoredBatch(batch, x, scores, codes, reasons, rung, scorer.version, stage_ms, flags)

    def flush_pending(self) -> bool:
        """Apply transactions decided while the store was away; True when none are left."""
        if not self.pending:
            return True
        if self.perf() < self._retry_at:
            return False
        merged = _concat([b for b, _ in self.pending])
        marks: dict[int, int] = {}
        for _, offsets in self.pending:
            for partition, offset in offsets.items():
                marks[partition] = max(offset, marks.get(partition, offset))
        try:
            self._apply(merged, None, marks)  # judged when decided: no flags wanted here
        except FeatureStoreUnavailable as exc:
            self._fail(exc)
            return False
        logger.info("applied %d pending transactions to the store", len(merged))
        self.pending.clear()
        self._backoff_s = 0.05
        return True

    def mark(self, offsets: Mapping[int, int]) -> None:
        """Record marks for consumed records that carried no valid transaction (all dead
        letters): queued behind pending transactions, so marks never pass unapplied ones."""
        if not offsets or self.marks_topic is None:
            return
        self.pending.append((_EMPTY, dict(offsets)))
        self.flush_pending()

    def _apply(
        self,
        batch: TransactionBatch,
        timeout_s: float | None,
        offsets: dict[int, int],
        watermark_s: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.marks_topic is None or not offsets:
            out = self.store.apply_flagged(batch, timeout_s=timeout_s, watermark_s=watermark_s)
        else:
            store: OffsetTrackingStore = self.store  # type: ignore[assignment]
            out = store.apply_flagged(
                batch,
                timeout_s=timeout_s,
                offsets=offsets,
                topic=self.marks_topic,
                watermark_s=watermark_s,
            )
        if self._down:
            self._down = False
            if self.on_store_back is not None:
                self.on_store_back()
        return out

    def _apply_or_retry(
        self,
        batch: TransactionBatch,
        timeout_s: float,
        offsets: dict[int, int],
        watermark_s: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The store call, asked once more after a timeout before the store counts as down.

        Our scripts run to completion in Redis whatever the client does, so a batch that
        was merely costly (deep out-of-order inserts, a long history) has been applied by
        the time the second call is answered, and that call reads its rows back as
        redelivered ones: same rows, no second application. A store that is hung stays
        silent for the second call too; it is taken for down after twice the bound, for
        this one batch.
        """
        try:
            return self._apply(batch, timeout_s, offsets, watermark_s)
        except FeatureStoreTimeout as exc:
            self.planner.observe_store_timeout(len(batch))
            logger.info("feature store slow (%s); asking once more", exc)
        return self._apply(batch, timeout_s, offsets, watermark_s)

    def _features(
        self,
        batch: TransactionBatch,
        plan: Plan,
        stage_ms: dict[str, float],
        offsets: dict[int, int],
        watermark_s: np.ndarray | None,
    ) -> tuple[np.ndarray, str | None, np.ndarray]:
        t0 = self.perf()
        want_store = plan.rung != RUNG_PARTIAL and plan.store_timeout_s > 0
        if want_store and self.flush_pending():
            try:
                full, flags = self._apply_or_retry(
                    batch, plan.store_timeout_s, offsets, watermark_s
                )
                self._timed("features", len(batch), t0, stage_ms, "features")
                return full.astype(np.float32, copy=False), None, flags
            except FeatureStoreUnavailable as exc:  # refused, unreachable, or silent that long
                self._fail(exc)
        self.pending.append((batch, offsets))
        x = np.full((len(batch), len(FEATURE_NAMES)), np.nan, dtype=np.float32)
        x[:, : len(TRANSACTION_LEVEL_NAMES)] = transaction_level_features(
            batch.event_time_ms, batch.amount, self.config
        )
        stage_ms["features"] = (self.perf() - t0) * 1e3
        # without the store only the event time can be judged, against the watermark
        flags = watermark_flags(batch, watermarks(batch, watermark_s), self.config)
        return x, RUNG_PARTIAL, flags

    def _rules(
        self, batch: TransactionBatch, x: np.ndarray, stage_ms: dict[str, float]
    ) -> ScoredBatch:
        codes, scores = self.rules.decide(batch.amount)
        reasons = {int(i): self.rules.reason(int(codes[i])) for i in np.flatnonzero(codes)}
        return ScoredBatch(batch, x, scores, codes, reasons, RUNG_RULES, None, stage_ms)

    def _reasons(
        self,
        scorer: ScorerLike,
        x: np.ndarray,
        codes: np.ndarray,
        stage_ms: dict[str, float],
        trees: int | None,
    ) -> dict[int, list[dict[str, Any]]]:
        rows = np.flatnonzero(codes >= REVIEW)
        if rows.size == 0:
            return {}
        t0 = self.perf()
        tops = scorer.reasons(x[rows], k=3, trees=trees)
        self._timed("reasons", int(rows.size), t0, stage_ms, "reasons")
        return {
            int(r): [{"feature": name, "contribution": round(float(v), 6)} for name, v in top]
            for r, top in zip(rows, tops, strict=True)
        }

    def _timed(self, stage: str, n: int, t0: float, stage_ms: dict[str, float], key: str) -> None:
        seconds = self.perf() - t0
        self.planner.observe(stage, n, seconds)
        stage_ms[key] = seconds * 1e3

    def _fail(self, exc: FeatureStoreUnavailable) -> None:
        self._down = True
        self._retry_at = self.perf() + self._backoff_s
        logger.warning("feature store unavailable (%s); retry in %.2f s", exc, self._backoff_s)
        self._backoff_s = min(self._backoff_s * 2, 1.0)


FLAG_NAMES = (
    (FLAG_CONFLICT, "conflicting_duplicate"),
    (FLAG_OUTLIER, "event_time_outlier"),
    (FLAG_CAPPED, "history_capped"),
)
"""A decision's ``flags``: what the store found about its transaction."""


def flag_names(flags: np.ndarray | None) -> dict[int, list[str]]:
    """Row -> names of its flags, for the flagged rows only."""
    if flags is None or not flags.any():
        return {}
    return {
        int(i): [name for bit, name in FLAG_NAMES if int(flags[i]) & bit]
        for i in np.flatnonzero(flags)
    }


_EMPTY = TransactionBatch.from_columns([], [], [], np.empty(0, np.int64), np.empty(0))


def _concat(batches: list[TransactionBatch]) -> TransactionBatch:
    batches = [b for b in batches if len(b)] or batches[:1]
    if len(batches) == 1:
        return batches[0]
    return TransactionBatch.from_columns(
        [t for b in batches for t in b.transaction_id],
        [c for b in batches for c in b.customer_id],
        [k for b in batches for k in b.terminal_id],
        np.concatenate([b.event_time_ms for b in batches]),
        np.concatenate([b.amount for b in batches]),
    )
