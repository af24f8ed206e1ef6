"""The latency planner: a running cost model per stage and the choice of batch size and rung.

Each stage's cost is modelled as ``fixed + per_record * n`` and fitted by exponentially
weighted least squares over recent batches, so the model follows the machine as load
changes. Predictions add a safety margin; planning is cheap (a few float operations).

The objective is decisions both on time and good. Every rung below the full path costs
decision quality, so the truncated model is taken only where it turns a deadline the full
path would miss into a met one, and only when it keeps at least ``quality_floor`` of the full
path's average precision as measured for the model serving
(``fraudstream.models.scorer.Scorer.rung_quality``). A record that no allowed rung can get in time
is
late anyway: it takes the full path. Partial features are never chosen to meet a deadline
(on the handbook data they keep about an eighth of the full path's average precision): a
store call waits for a slow reply up to ``store_down_after_s`` and is asked once more after
a timeout (the pipeline reads an applied batch back as redelivered), and only a store that
is down (refused, unreachable, or silent through both calls) sends batches there
(``fraudstream.stream.pipeline``).
With ``degrade="never"`` every batch takes the full path; without a model, rules.

Whatever the deadlines, a batch carries at most the records whose store call, at the recent
store cost per record, fits in a third of ``store_down_after_s``: a backlog of costly
records (a customer's deep out-of-order inserts cost O(window) each) is split into smaller
batches rather than having its store calls mistaken for an outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fraudstream.models.manifest import RUNG_PARTIAL, RUNG_TRUNCATED

RUNG_FULL: str | None = None
RUNG_RULES = "rules"
RUNGS: tuple[str | None, ...] = (RUNG_FULL, RUNG_TRUNCATED, RUNG_PARTIAL, RUNG_RULES)
__all__ = ["RUNG_FULL", "RUNG_PARTIAL", "RUNG_RULES", "RUNG_TRUNCATED", "RUNGS", "Planner"]

Degrade = Literal["never", "to-meet-deadlines"]
QUALITY_FLOOR = 0.5
"""Least average precision, relative to the full path's, of the truncated model for it to
be taken to meet a deadline (about 0.9 on the handbook data)."""
STORE_DOWN_AFTER_S = 1.0
"""A store call without an answer for this long counts as an outage."""
STORE_SHARE = 1 / 3
"""Most of ``store_down_after_s`` that one batch's store call may be expected to take."""

STAGES = ("decode", "features", "score_full", "score_truncated", "reasons", "produce", "commit")


@dataclass
class StageCost:
    """Exponentially weighted linear fit of seconds against batch size for one stage."""

    fixed_s: float
    """Prior fixed cost, used until observations arrive."""
    per_record_s: float
    """Prior per-record cost."""
    decay: float = 0.9
    """Weight kept by past observations at each new one."""
    _w: float = 0.0
    _sn: float = 0.0
    _snn: float = 0.0
    _st: float = 0.0
    _snt: float = 0.0
    _err: float = 0.0

    def observe(self, n: int, seconds: float) -> None:
        # The prior is a guess: errors against it say nothing about the machine's noise.
        residual = seconds - self.predict_mean(n) if self._w >= 2 else 0.0
        d = self.decay
        self._w = self._w * d + 1.0
        self._sn = self._sn * d + n
        self._snn = self._snn * d + n * n
        self._st = self._st * d + seconds
        self._snt = self._snt * d + n * seconds
        self._err = self._err * d + abs(residual) * (1 - d)
        mean_n = self._sn / self._w
        var_n = self._snn / self._w - mean_n * mean_n
        mean_t = self._st / self._w
        if var_n > 1e-9:
            slope = (self._snt / self._w - mean_n * mean_t) / var_n
            self.per_record_s = max(slope, 0.0)
            self.fixed_s = max(mean_t - self.per_record_s * mean_n, 0.0)
        else:  # every batch had the same size: keep the per-record prior, refit the fixed part
            self.fixed_s = max(mean_t - self.per_record_s * mean_n, 0.0)

    def predict_mean(self, n: int) -> float:
        return self.fixed_s + self.per_record_s * n

    def predict(self, n: int) -> float:
        """A cautious estimate: the mean plus twice the typical recent error."""
        return self.predict_mean(n) + 2.0 * self._err


def _default_costs() -> dict[str, StageCost]:
    return {
        "decode": StageCost(20e-6, 4e-6),
        "features": StageCost(500e-6, 40e-6),
        "score_full": StageCost(200e-6, 5e-6),
        "score_truncated": StageCost(100e-6, 2e-6),
        "reasons": StageCost(300e-6, 50e-6),
        "produce": StageCost(200e-6, 10e-6),
        "commit": StageCost(5e-3, 2e-6),
    }


@dataclass
class Plan:
    """What to do with the next batch."""

    size: int
    """Records to take from the buffer."""
    rung: str | None
    """Planned rung: None (full path), truncated_model, partial_features or rules."""
    store_timeout_s: float
    """Bound on the store call for this batch (0: no call); unanswered that long, the store
    counts as down."""


@dataclass
class Planner:
    """Sizes batches to meet the oldest record's deadline and picks the rung."""

    max_batch: int
    """Upper bound on a batch."""
    degrade: Degrade = "to-meet-deadlines"
    """``never``: always the full path; ``to-meet-deadlines``: a lower rung where it makes
    a deadline the full path would miss (see the module docstring)."""
    quality_floor: float = QUALITY_FLOOR
    """Least relative average precision of a rung taken to meet a deadline."""
    store_down_after_s: float = STORE_DOWN_AFTER_S
    """Bound on a store call that may wait; past it the store counts as down."""
    costs: dict[str, StageCost] = field(default_factory=_default_costs)
    """Cost model per stage."""
    alert_share: float = 0.05
    """Expected share of records that need reasons (review/decline)."""
    quality: dict[str, float | None] = field(default_factory=dict)
    """Relative average precision per lower rung of the model serving (None: unmeasured or
    off); set by ``set_quality`` at each model swap."""
    commit_in_path: bool = False
    """Exactly-once: a decision is visible once its transaction commits, so the commit is
    part of every record's path (``commit`` stage)."""
    store_share: float = STORE_SHARE
    """Most of ``store_down_after_s`` one batch's store call may be expected to take."""
    _store_rate_s: float = 0.0
    """Recent store seconds per record, fixed cost included (0: none observed)."""

    def observe(self, stage: str, n: int, seconds: float) -> None:
        self.costs[stage].observe(n, seconds)
        if stage == "features" and n > 0:
            self._observe_store_rate(seconds / n)

    def observe_store_timeout(self, n: int) -> None:
        """A store call for ``n`` records went unanswered for ``store_down_after_s``."""
        if n > 0:
            self._observe_store_rate(self.store_down_after_s / n)

    def _observe_store_rate(self, rate_s: float) -> None:
        d = 0.7  # follows a slow spell within a few batches
        self._store_rate_s = (
            rate_s
            if self._store_rate_s == 0.0
            else d * self._store_rate_s + (1 - d) * max(rate_s, 0.0)
        )

    def store_cap(self) -> int:
        """Most records one batch may carry so that its store call, at the recent cost per
        record, stays within ``store_share`` of the bound past which the store counts as
        down: a batch of costly records (deep out-of-order inserts, long histories) is
        split instead of being taken for an outage and decided on partial features."""
        if self._store_rate_s <= 0.0:
            return self.max_batch
        fits = int(self.store_share * self.store_down_after_s / self._store_rate_s)
        return max(1, min(self.max_batch, fits))

    def set_quality(self, quality: Mapping[str, float | None]) -> None:
        """The lower rungs' measured quality for the model now serving."""
        self.quality = dict(quality)

    def degraded_rungs(self) -> list[str]:
        """Rungs that may be taken to meet a deadline."""
        if self.degrade == "never":
            return []
        quality = self.quality.get(RUNG_TRUNCATED)
        return [RUNG_TRUNCATED] if quality is not None and quality >= self.quality_floor else []

    def path_cost(self, n: int, rung: str | None) -> float:
        c = self.costs
        alerts = max(1, int(n * self.alert_share))
        post = c["reasons"].predict(alerts) + c["produce"].predict(n) + self.commit_cost(n)
        if rung is RUNG_RULES:
            return c["produce"].predict(n) + self.commit_cost(n)
        model = c["score_truncated"] if rung == RUNG_TRUNCATED else c["score_full"]
        store = 0.0 if rung == RUNG_PARTIAL else c["features"].predict(n)
        return store + model.predict(n) + post

    def commit_cost(self, n: int) -> float:
        """Seconds until a batch of ``n`` decisions is visible after it is produced, with
        the planner's margin."""
        return self.costs["commit"].predict(n) if self.commit_in_path else 0.0

    def publish_cost(self, n: int) -> float:
        """Seconds to produce ``n`` held decisions and see them committed, with the margin
        (exactly-once: what the outbox keeps free before the earliest held deadline)."""
        return self.costs["produce"].predict(n) + self.commit_cost(n)

    def expected_commit_s(self, n: int) -> float:
        """The same without the margin: what a decision's ``commit`` stage reports."""
        return self.costs["commit"].predict_mean(n) if self.commit_in_path else 0.0

    def plan(self, slacks_s: np.ndarray | None, buffered: int, has_model: bool) -> Plan:
        """Plan the next batch from ``buffered`` records in arrival order.

        ``slacks_s[i]`` is the time left before record i's deadline (None: no deadlines, as in
        a backtest). Records no allowed rung can get in time are late: they bound nothing.
        The batch is the longest prefix whose tightest other record meets its deadline on
        the best rung that fits: the full path first, then the allowed lower rungs.
        """
        if buffered <= 0:
            return Plan(0, RUNG_FULL, 0.0)
        if not has_model:
            return Plan(min(buffered, self.max_batch), RUNG_RULES, 0.0)
        cap = min(buffered, self.store_cap())
        if slacks_s is None:
            return Plan(cap, RUNG_FULL, self.store_down_after_s)
        rungs = [RUNG_FULL, *self.degraded_rungs()]
        fastest = min(self.path_cost(1, rung) for rung in rungs)
        slacks = np.asarray(slacks_s[:cap], dtype=np.float64)
        tightest = np.minimum.accumulate(np.where(slacks >= fastest, slacks, np.inf))
        for rung in rungs:
            size = self._largest_fitting(tightest, rung)
            if size:
                if size < cap:
                    waiting = np.asarray(slacks_s[:buffered], dtype=np.float64)
                    size = self._catch_up(waiting, fastest, size, cap, rung)
                return Plan(size, rung, self.store_down_after_s)
        return Plan(cap, RUNG_FULL, self.store_down_after_s)  # unreachable: see fastest

    def _catch_up(
        self, slacks: np.ndarray, fastest: float, size: int, cap: int, rung: str | None
    ) -> int:
        """``size`` (the longest prefix the tightest deadline allows), or a larger batch (up
        to ``cap``) where that meets at least as many of the buffered deadlines, each size
        counted as if taken again and again until the buffer is done. Where no size meets
        any, the prefix stays: past saving any deadline, larger batches add latency without
        adding throughput the machine has (DESIGN.md, the planner).

        The prefix saves the tightest record in it, but every batch pays the stages' fixed
        costs: a stream a little behind, whose oldest records still just make it, would be
        taken in small batches that hold every record behind them past their deadlines,
        and stay behind."""
        live = slacks >= fastest
        position = np.arange(len(slacks))

        def met(n: int) -> int:
            done = (position // n + 1) * self.path_cost(n, rung)
            return int(np.count_nonzero(live & (slacks >= done)))

        best, best_met = size, met(size)
        n = size
        while n < cap:
            n = min(2 * n, cap)
            m = met(n)
            if m > best_met or (m == best_met > 0):  # a tie: the larger catches up sooner
                best, best_met = n, m
        return best

    def _largest_fitting(self, tightest: np.ndarray, rung: str | None) -> int:
        """Largest n with path_cost(n) <= tightest[n-1] (both sides monotone in n)."""
        lo, hi = 0, len(tightest)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.path_cost(mid, rung) <= tightest[mid - 1]:
                lo = mid
            else:
                hi = mid - 1
        return lo
