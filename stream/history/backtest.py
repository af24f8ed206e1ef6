"""Backtest models over history with the live code path: history is replayed in event-time
order through a feature store (labels fed at event time + delay), the test window is scored
through ``fraudstream.stream.pipeline.Pipeline`` in micro-batches, and the protocol's metrics are
taken
on the protocol's test set.

Only the history a test transaction's windows can reach is replayed: customer windows look
back ``max(customer windows)``, terminal windows ``delay + max(terminal windows)``, so rows
older than that change no test feature (the offline computation agrees, and a test proves it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import (
    DAY_S,
    TRANSACTION_LEVEL_NAMES,
    FeatureConfig,
    IntArray,
    seconds,
)
from fraudstream.features.exceptions import ConfigError, DataFileError, FeatureStoreUnavailable
from fraudstream.features.replay import LabelFeed, fraud_labels
from fraudstream.features.store import FeatureStore
from fraudstream.models import metrics, protocol
from fraudstream.models.manifest import Thresholds
from fraudstream.models.protocol import DAY_MS, EvalSet, Split
from fraudstream.stream.decision import Rules
from fraudstream.stream.pipeline import Pipeline, ScorerLike
from fraudstream.stream.planner import RUNG_PARTIAL, RUNG_RULES, RUNG_TRUNCATED, Planner

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.int8]
Progress = Callable[[int], None]
_Part = tuple[IntArray, FloatArray, CodeArray, FloatArray | None, dict[str, FloatArray]]


class ModelLike(ScorerLike, Protocol):
    """A scorer with the manifest thresholds (``fraudstream.models.scorer.Scorer``)."""

    @property
    def thresholds(self) -> Thresholds: ...


@dataclass(frozen=True)
class Window:
    """The protocol window of a backtest, in epoch ms."""

    test_start_ms: int
    """First test day, UTC midnight."""
    test_days: int = 7
    """Test days."""
    delay_days: int = 7
    """Label delay: the protocol's gap, and how late labels reach the store."""
    train_days: int = 7
    """Training window before the delay (its frauds exclude customers from the test)."""
    k: int = 100
    """Customers per day for card precision."""

    @property
    def test_end_ms(self) -> int:
        return self.test_start_ms + self.test_days * DAY_MS

    @property
    def train_start_ms(self) -> int:
        return self.test_start_ms - (self.delay_days + self.train_days) * DAY_MS

    def history_start_ms(self, config: FeatureConfig) -> int:
        """Oldest event time any test transaction's windows can reach."""
        reach_s = max(
            max(config.customer_windows_s), config.delay_s + max(config.terminal_windows_s)
        )
        return self.test_start_ms - reach_s * 1000


@dataclass(frozen=True)
class ModelRun:
    """One model's scores and metrics on the test set."""

    version: str
    """Registry version."""
    thresholds: Thresholds
    """Review / decline thresholds from its manifest."""
    scores: FloatArray
    """Score of each test-set transaction (``EvalSet`` order)."""
    codes: CodeArray
    """Decision code of each: 0 approve, 1 review, 2 decline."""
    metrics: dict[str, float]
    """``fraudstream.models.protocol.evaluate`` output."""
    card_per_day: tuple[float, ...]
    """Card precision@k of each test day."""
    rungs: dict[str, dict[str, float]] = field(default_factory=dict)
    """Rung -> ROC AUC, average precision and card precision@k of the same test set scored
    the way that rung scores (the champion only): what each step down the ladder costs."""


@dataclass(frozen=True)
class Scored:
    """Every transaction of the test window, scored on the live path."""

    rows: IntArray
    """Table rows of the test window, in event-time order."""
    scores: FloatArray
    """Champion score per row of ``rows``."""
    codes: CodeArray
    """Champion decision per row."""
    challenger_scores: FloatArray | None
    """Challenger score per row (same features), when there is one."""
    challenger_codes: CodeArray | None
    """Challenger decision per row."""
    rung_scores: dict[str, FloatArray] = field(default_factory=dict)
    """Champion score per row on each lower rung (truncated model when the model has one,
    partial features, rules), from the same features."""


@dataclass(frozen=True)
class LiveRun:
    """What a running ``serve`` answered for the test window (``--via-kafka``)."""

    sent: int
    """Test-window transactions published to the input topic."""
    scores: FloatArray
    """Serve's score per row of ``Scored.rows`` (NaN where no decision came back)."""
    latency_ms: FloatArray
    """Serve's ``latency_ms.total`` per decision received."""
    stage_ms: dict[str, float]
    """Mean milliseconds per stage over the decisions received."""
    degraded: dict[str, int]
    """Decisions per ladder rung (``full`` for the full path)."""
    deadline_missed: int
    """Decisions whose ``deadline_met`` was false."""
    duplicates: int
    """Decisions received more than once for one transaction (the first one is kept)."""
    compared: int
    """Full-path decisions compared with the backtest (degraded ones score differently)."""
    mismatched: int
    """Full-path decisions whose score differs from the backtest's."""
    max_abs_diff: float
    """Largest score difference on the full path (0.0 when equal everywhere)."""
    metrics: dict[str, float]
    """Protocol metrics of serve's scores on the test set (empty if some are missing)."""

    @property
    def received(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.scores)))


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest measured; ``stream.report`` writes it out."""

    window: Window
    """The protocol window."""
    split: Split
    """Rows of the training window and of the kept test set."""
    eval_set: EvalSet
    """The kept test set."""
    champion: ModelRun
    """The model under test."""
    challenger: ModelRun | None
    """The model compared with it."""
    scored: Scored
    """Scores of the whole test window (the live comparison uses them)."""
    replayed: int
    """Transactions applied to the store."""
    labels_fed: int
    """Fraud labels fed to the store."""
    timings_s: dict[str, float] = field(default_factory=dict)
    """Seconds per phase."""


@dataclass(frozen=True)
class Step:
    """One micro-batch of the replay: the labels due first, then the transactions."""

    labels: slice
    """Labels of the feed to apply before the batch."""
    rows: IntArray
    """Table rows of the batch, in event-time order."""
    in_test: bool
    """True when the batch is in the test window (scored), False for history."""


def steps(
    table: pd.DataFrame, feed: LabelFeed, window: Window, start_ms: int, batch_size: int
) -> Iterator[Step]:
    """Batches of at most ``batch_size`` rows, never spanning a day nor the test start;
    before each, the labels whose label second is at most the batch's last second.

    Early labels are harmless (a label only counts in windows ending at or after its
    transaction's time + delay) and late ones are not, hence "at most the last second".
    """
    ms = table["event_time_ms"].to_numpy(dtype=np.int64)
    lo = int(np.searchsorted(ms, start_ms, side="left"))
    split_at = int(np.searchsorted(ms, window.test_start_ms, side="left"))
    hi = int(np.searchsorted(ms, window.test_end_ms, side="left"))
    secs = seconds(ms)
    fed = 0
    i = lo
    while i < hi:
        day_end = int(np.searchsorted(secs, secs[i] + DAY_S, side="left"))
        stop = min(i + batch_size, hi, max(day_end, i + 1))
        if i < split_at < stop:
            stop = split_at
        due = int(np.searchsorted(feed.label_seconds, secs[stop - 1], side="right"))
        yield Step(slice(fed, max(due, fed)), np.arange(i, stop), i >= split_at)
        fed = max(due, fed)
        i = stop


def batch_of(
    table: pd.DataFrame, rows: IntArray, columns: dict[str, list[str]]
) -> TransactionBatch:
    """The rows as a ``TransactionBatch`` (``columns``: the id columns as str lists)."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    return TransactionBatch(
        columns["transaction_id"][lo:hi],
        columns["customer_id"][lo:hi],
        columns["terminal_id"][lo:hi],
        table["event_time_ms"].to_numpy(dtype=np.int64)[lo:hi],
        table["amount"].to_numpy(dtype=np.float64)[lo:hi],
    )


def id_columns(table: pd.DataFrame) -> dict[str, list[str]]:
    """The id columns as lists of str, converted once."""
    names = ("transaction_id", "customer_id", "terminal_id")
    return {name: table[name].astype(str).tolist() for name in names}


@dataclass
class Backtest:
    """Replays a table through a store and scores the test window on the live path."""

    store: FeatureStore
    """Memory or Redis store, fresh."""
    champion: ModelLike
    """The model under test."""
    challenger: ModelLike | None = None
    """Scored on the same features, side by side."""
    config: FeatureConfig = field(default_factory=FeatureConfig)
    """Feature definitions the models were trained on."""
    batch_size: int = 1024
    """Largest micro-batch."""
    progress: Progress | None = None
    """Called with the number of transactions applied so far."""

    def run(self, table: pd.DataFrame, window: Window) -> BacktestResult:
        """Replay, score, evaluate. ``table``: canonical, sorted by event time, with labels."""
        check_table(table, window)
        timings: dict[str, float] = {}
        began = time.perf_counter()
        split = protocol.split(
            table,
            datetime.fromtimestamp(window.train_start_ms / 1000, tz=UTC).date(),
            window.train_days,
            window.delay_days,
            window.test_days,
        )
        eval_set = protocol.eval_set(table, split)
        timings["split_s"] = time.perf_counter() - began
        scored, replayed, fed = self._replay(table, window)
        timings["replay_and_score_s"] = time.perf_counter() - began - timings["split_s"]
        champion, challenger = self._evaluate(split, eval_set, scored, window)
        timings["total_s"] = time.perf_counter() - began
        return BacktestResult(
            window, split, eval_set, champion, challenger, scored, replayed, fed, timings
        )

    def _replay(self, table: pd.DataFrame, window: Window) -> tuple[Scored, int, int]:
        history_start = window.history_start_ms(self.config)
        relevant = table["event_time_ms"].to_numpy() >= history_start
        feed = fraud_labels(table.loc[relevant], window.delay_days)
        columns = id_columns(table)
        pipeline = Pipeline(
            store=self.store,
            model=lambda: self.champion,
            planner=Planner(max_batch=self.batch_size),
            config=self.config,
        )
        parts: list[_Part] = []
        applied = fed = 0
        for step in steps(table, feed, window, history_start, self.batch_size):
            labels = feed.labels[step.labels]
            if labels:
                self.store.apply_labels(labels)
                fed += len(labels)
            batch = batch_of(table, step.rows, columns)
            if step.in_test:
                parts.append((step.rows, *self._score(pipeline, batch)))
            else:
                self.store.apply(batch, timeout_s=None)
            applied += len(batch)
            if self.progress:
                self.progress(applied)
        return self._collect(parts), applied, fed

    def _score(
        self, pipeline: Pipeline, batch: TransactionBatch
    ) -> tuple[FloatArray, CodeArray, FloatArray | None, dict[str, FloatArray]]:
        plan = pipeline.planner.plan(None, len(batch), has_model=True)
        result = pipeline.run(batch, plan)
        if result.rung is not None:
            msg = f"a backtest batch took the {result.rung} rung (the feature store failed); "
            msg += "its scores would not be the model's: check the store and rerun"
            raise FeatureStoreUnavailable(msg)
        other = None
        if self.challenger is not None:
            other = np.asarray(self.challenger.score(result.features), dtype=np.float64)
        rungs = lower_rung_scores(self.champion, result.features, batch.amount)
        return np.asarray(result.scores, dtype=np.float64), result.codes, other, rungs

    def _collect(self, parts: list[_Part]) -> Scored:
        if not parts:
            msg = "the test window holds no transaction: pick a --test-start inside the data"
            raise ConfigError(msg)
        rows = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        codes = np.concatenate([p[2] for p in parts]).astype(np.int8)
        rungs = {name: np.concatenate([p[4][name] for p in parts]) for name in parts[0][4]}
        if self.challenger is None:
            return Scored(rows, scores, codes, None, None, rungs)
        other = np.concatenate([p[3] for p in parts if p[3] is not None])
        challenger_codes = self.challenger.decide(other).astype(np.int8)
        return Scored(rows, scores, codes, other, challenger_codes, rungs)

    def _evaluate(
        self, split: Split, eval_set: EvalSet, scored: Scored, window: Window
    ) -> tuple[ModelRun, ModelRun | None]:
        where = np.searchsorted(scored.rows, split.test_rows)
        champion = model_run(
            self.champion, eval_set, scored.scores[where], scored.codes[where], window.k
        )
        ladder = {"full": scored.scores} | scored.rung_scores
        rungs = {
            name: rung_metrics(eval_set, values[where], window.k) for name, values in ladder.items()
        }
        champion = dataclasses.replace(champion, rungs=rungs)
        if self.challenger is None or scored.challenger_scores is None:
            return champion, None
        assert scored.challenger_codes is not None
        challenger = model_run(
            self.challenger,
            eval_set,
            scored.challenger_scores[where],
            scored.challenger_codes[where],
            window.k,
        )
        return champion, challenger


def model_run(
    model: ModelLike, eval_set: EvalSet, scores: FloatArray, codes: CodeArray, k: int
) -> ModelRun:
    """Scores, decisions and the protocol metrics of one model on the test set."""
    values = protocol.evaluate(eval_set, scores, model.thresholds, k)
    card = metrics.card_precision_at_k(eval_set.day, eval_set.customer, eval_set.y, scores, k)
    return ModelRun(model.version, model.thresholds, scores, codes, values, card.per_day)


def lower_rung_scores(
    model: ModelLike, x: npt.NDArray[np.floating[Any]], amount: FloatArray
) -> dict[str, FloatArray]:
    """The scores the lower rungs would give rows whose full features are ``x``."""
    out: dict[str, FloatArray] = {}
    if model.truncation_trees is not None:
        out[RUNG_TRUNCATED] = np.asarray(
            model.score(x, trees=model.truncation_trees), dtype=np.float64
        )
    blind = np.array(x, dtype=np.float32, copy=True)
    blind[:, len(TRANSACTION_LEVEL_NAMES) :] = np.nan
    out[RUNG_PARTIAL] = np.asarray(model.score(blind), dtype=np.float64)
    out[RUNG_RULES] = Rules().decide(amount)[1]
    return out


def rung_metrics(eval_set: EvalSet, scores: FloatArray, k: int) -> dict[str, float]:
    """The threshold-free metrics of one rung's scores on the test set."""
    card = metrics.card_precision_at_k(eval_set.day, eval_set.customer, eval_set.y, scores, k)
    return {
        "roc_auc": metrics.roc_auc(eval_set.y, scores),
        "average_precision": metrics.average_precision(eval_set.y, scores),
        f"card_precision_at_{k}": card.mean,
    }


def check_table(table: pd.DataFrame, window: Window) -> None:
    """One-line errors for data a backtest cannot use."""
    if "is_fraud" not in table.columns:
        msg = "the data has no is_fraud column: a backtest needs labels (map one with --map)"
        raise DataFileError(msg)
    ms = table["event_time_ms"].to_numpy()
    if (np.diff(ms) < 0).any():
        msg = "the table must be sorted by event time (read it with read_transactions)"
        raise DataFileError(msg)
    inside = (ms >= window.test_start_ms) & (ms < window.test_end_ms)
    if not inside.any():
        start = protocol.iso_ms(window.test_start_ms)[:10]
        covers = f"{_day(ms[0])} to {_day(ms[-1])}" if ms.size else "nothing"
        msg = f"no transaction in the {window.test_days} test days from {start} (the data "
        msg += f"covers {covers}); pick a --test-start inside the data"
        raise ConfigError(msg)


def _day(ms: int) -> str:
    return protocol.iso_ms(int(ms))[:10]


# ---- the live path: the test window through a running serve -------------------------------


class DecisionSource(Protocol):
    """Reads decisions back from ``fraud.decisions`` (see ``DecisionReader``)."""

    def collect(self, want: set[str], timeout_s: float) -> tuple[dict[str, Any], int]:
        """Decisions for the ids in ``want`` (first one per id) and the duplicates seen."""
        ...


@dataclass
class LiveBacktest:
    """Sends the test window through ``serve`` and compares its decisions with a backtest.

    ``serve``'s store must see the same history: this primes it (``store`` is serve's
    Redis store, same URL and prefix) with the history before the test window and its
    labels, then publishes the test window in phases no longer than the label delay,
    waiting for every decision of a phase before feeding the labels that become due in the
    next. A label is only needed ``delay`` after its transaction, so each phase's labels
    are in the store before any transaction that can count them, and none counts early.
    """

    store: FeatureStore
    """Serve's feature store (fresh prefix, or one that has seen nothing else)."""
    publish: Callable[[pd.DataFrame], int]
    """Publishes a table's transactions to serve's input topic; returns how many."""
    decisions: DecisionSource
    """Serve's decisions topic."""
    config: FeatureConfig = field(default_factory=FeatureConfig)
    """Feature definitions serve runs with."""
    batch_size: int = 1024
    """Rows per priming batch."""
    timeout_s: float = 300.0
    """Longest wait for a phase's decisions."""

    def run(self, table: pd.DataFrame, result: BacktestResult) -> LiveRun:
        window = result.window
        if window.delay_days > self.config.delay_days:
            msg = f"--via-kafka needs --delay-days <= {self.config.delay_days} (the feature "
            msg += "delay): later labels could not be fed in phases without counting early"
            raise ConfigError(msg)
        start = window.history_start_ms(self.config)
        feed = fraud_labels(
            table.loc[table["event_time_ms"].to_numpy() >= start], window.delay_days
        )
        columns = id_columns(table)
        got: dict[str, Any] = {}
        duplicates = sent = 0
        for phase in self._phases(table, feed, window, start):
            if not phase[0].in_test:  # the history, exactly as the backtest fed it
                for step in phase:
                    self.store.apply_labels(feed.labels[step.labels])
                    self.store.apply(batch_of(table, step.rows, columns), timeout_s=None)
                continue
            self.store.apply_labels([lab for step in phase for lab in feed.labels[step.labels]])
            rows = np.concatenate([step.rows for step in phase])
            sent += self.publish(table.iloc[rows])
            want = {columns["transaction_id"][int(r)] for r in rows}
            answers, dup = self.decisions.collect(want, self.timeout_s)
            got |= answers
            duplicates += dup
        return compare(table, result, got, sent, duplicates)

    def _phases(
        self, table: pd.DataFrame, feed: LabelFeed, window: Window, start: int
    ) -> Iterator[list[Step]]:
        """The history as one phase, then the test window cut every ``delay`` days."""
        phase_ms = min(window.delay_days, self.config.delay_days) * DAY_MS
        ms = table["event_time_ms"].to_numpy(dtype=np.int64)
        current: list[Step] = []
        key = -1
        for step in steps(table, feed, window, start, self.batch_size):
            first = int(ms[int(step.rows[0])])
            k = (first - window.test_start_ms) // phase_ms if step.in_test else -1
            if k != key and current:
                yield current
                current = []
            key = k
            current.append(step)
        if current:
            yield current


def compare(
    table: pd.DataFrame,
    result: BacktestResult,
    got: dict[str, Any],
    sent: int,
    duplicates: int,
) -> LiveRun:
    """Serve's decisions against the backtest's scores, row by row of the test window."""
    scored = result.scored
    ids = table["transaction_id"].to_numpy()[scored.rows].astype(str)
    live = np.full(ids.size, np.nan)
    full = np.zeros(ids.size, dtype=bool)
    latency: list[float] = []
    stages: dict[str, list[float]] = {}
    rungs: dict[str, int] = {}
    missed = 0
    for i, tid in enumerate(ids.tolist()):
        decision = got.get(tid)
        if decision is None:
            continue
        live[i] = float(decision["score"])
        rung = decision.get("degraded") or "full"
        full[i] = rung == "full"
        rungs[rung] = rungs.get(rung, 0) + 1
        missed += not decision.get("deadline_met", True)
        for stage, ms in decision.get("latency_ms", {}).items():
            (latency if stage == "total" else stages.setdefault(stage, [])).append(float(ms))
    diff = np.abs(live[full] - scored.scores[full])
    return LiveRun(
        sent=sent,
        scores=live,
        latency_ms=np.asarray(latency, dtype=np.float64),
        stage_ms={k: float(np.mean(v)) for k, v in stages.items()},
        degraded=rungs,
        deadline_missed=int(missed),
        duplicates=duplicates,
        compared=int(diff.size),
        mismatched=int(np.count_nonzero(diff)),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        metrics=_live_metrics(result, live),
    )


def _live_metrics(result: BacktestResult, live: FloatArray) -> dict[str, float]:
    scores = live[np.searchsorted(result.scored.rows, result.split.test_rows)]
    if np.isnan(scores).any():
        return {}
    champion = result.champion
    return protocol.evaluate(result.eval_set, scores, champion.thresholds, result.window.k)


class DecisionReader:
    """Reads ``fraud.decisions`` from the end it had when opened (older decisions are not
    this run's), ``read_committed`` so exactly-once serve is read correctly."""

    def __init__(self, consumer: Any, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic

    def open(self, timeout_s: float = 10.0) -> DecisionReader:
        from confluent_kafka import TopicPartition  # deferred: Kafka only with --via-kafka

        meta = self.consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        if meta is None or meta.error is not None:
            msg = f"decisions topic {self.topic!r} does not exist: is serve running on it?"
            raise ConfigError(msg)
        parts = []
        for p in sorted(meta.partitions):
            tp = TopicPartition(self.topic, p)
            tp.offset = self.consumer.get_watermark_offsets(tp, timeout=timeout_s)[1]
            parts.append(tp)
        self.consumer.assign(parts)
        return self

    def collect(self, want: set[str], timeout_s: float) -> tuple[dict[str, Any], int]:
        got: dict[str, Any] = {}
        duplicates = 0
        deadline = time.monotonic() + timeout_s
        while len(got) < len(want) and time.monotonic() < deadline:
            for msg in self.consumer.consume(1000, timeout=0.2):
                if msg.error() is not None:
                    logger.warning("decisions topic: %s", msg.error())
                    continue
                doc = orjson.loads(msg.value())
                tid = doc.get("transaction_id")
                if tid in got:
                    duplicates += 1
                elif tid in want:
                    got[tid] = doc
        if len(got) < len(want):
            logger.warning(
                "%d of %d decisions did not come back within %.0f s",
                len(want) - len(got),
                len(want),
                timeout_s,
            )
        return got, duplicates

    def close(self) -> None:
        self.consumer.close()
