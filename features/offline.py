"""The 15 features for a whole table at once, vectorised, with the online stores' semantics.

A transaction's customer windows hold the rows of the same customer up to and including it
in event-time order (ties in table order), which is exactly what a store fed in that order
has seen. Terminal windows end ``d`` days back, so every row in them precedes the
transaction, and every fraud label in them is known by then (labels arrive at
``event time + d``): ``is_fraud`` is used as is.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudstream.features.definitions import (
    AMOUNT_HISTORY_WIDTH,
    FeatureConfig,
    FloatArray,
    IntArray,
    assemble_features,
    cents,
    seconds,
    transaction_level_features,
)
from fraudstream.features.exceptions import DataFileError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("event_time_ms", "customer_id", "terminal_id", "amount")
_INT64_BUDGET = 2**62


def compute_features(df: pd.DataFrame, config: FeatureConfig | None = None) -> FloatArray:
    """``(len(df), n_features)`` float64 features, row ``i`` for ``df`` row ``i``.

    ``df`` has the canonical columns (see ``fraudstream.features.datafile``); it should be sorted by
    event time, and if it is not, rows are taken in stable event-time order anyway, so
    rows with equal times count in each other's windows in table order.
    """
    config = config or FeatureConfig()
    _check_columns(df)
    ms = df["event_time_ms"].to_numpy(dtype=np.int64)
    amount = _amounts(df)
    fraud = _fraud_flags(df)
    sec = seconds(ms)
    order = np.argsort(ms, kind="stable")
    customers = pd.factorize(df["customer_id"])[0].astype(np.int64)
    terminals = pd.factorize(df["terminal_id"])[0].astype(np.int64)
    c_counts, c_sums, history = customer_windows(
        sec, amount, customers, order, config.customer_windows_s
    )
    t_counts, t_frauds, ages = terminal_windows(
        sec, fraud, terminals, order, config.terminal_windows_s, config.delay_s
    )
    tx = transaction_level_features(ms, amount, config)
    return assemble_features(tx, c_counts, c_sums, t_counts, t_frauds, history, ages)


def customer_windows(
    sec: IntArray,
    amount: FloatArray,
    entity: IntArray,
    order: IntArray,
    windows_s: tuple[int, ...],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Counts and amount sums over ``(t - w, t]`` per entity, current row included, and
    the amount history of the widest window's earlier rows (``AMOUNT_HISTORY_WIDTH``)."""
    perm = _group_order(entity, order)
    key = _entity_keys(entity[perm], sec[perm], max(windows_s))
    pos = np.arange(len(key), dtype=np.int64)
    prefix = _ExactPrefix(amount[perm])
    counts = np.empty((len(key), len(windows_s)), dtype=np.float64)
    sums = np.empty_like(counts)
    lo = pos
    for j, w in enumerate(windows_s):
        lo = np.searchsorted(key, key - w, side="right").astype(np.int64)
        counts[perm, j] = pos - lo + 1
        sums[perm, j] = prefix.window_sum(lo, pos + 1)
    history = np.empty((len(key), AMOUNT_HISTORY_WIDTH), dtype=np.float64)
    history[perm] = amount_history(amount[perm], lo, pos)
    return counts, sums, history


def amount_history(amount: FloatArray, lo: IntArray, hi: IntArray) -> FloatArray:
    """``AMOUNT_HISTORY_WIDTH`` columns over ``amount[lo:hi]`` per row: the largest whole
    cents (-1: none)."""
    c = cents(amount).astype(np.int64)
    out = np.empty((len(lo), AMOUNT_HISTORY_WIDTH), dtype=np.float64)
    out[:, 0] = _range_max(c, lo, hi)
    return out


def _range_max(values: IntArray, lo: IntArray, hi: IntArray) -> IntArray:
    """``max(values[lo:hi])`` per row, -1 when empty (values >= 0): level ``j`` of a
    sparse table holds the maxima of runs of ``2**j``, a range is two overlapping runs."""
    length = hi - lo
    out = np.full(len(lo), -1, dtype=np.int64)
    level, j = values, 0
    while True:
        rows = np.flatnonzero((length >= 1 << j) & (length < 2 << j))
        out[rows] = np.maximum(level[lo[rows]], level[hi[rows] - (1 << j)])
        if not (length >= 2 << j).any():
            return out
        level = np.maximum(level[: -(1 << j)], level[1 << j :])
        j += 1


def terminal_windows(
    sec: IntArray,
    fraud: IntArray,
    entity: IntArray,
    order: IntArray,
    windows_s: tuple[int, ...],
    delay_s: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Counts and fraud counts over ``(t - d - w, t - d]`` per entity, and the ages of
    the widest window's first and last fraud (``FRAUD_AGES_WIDTH``, -1: none)."""
    perm = _group_order(entity, order)
    key = _entity_keys(entity[perm], sec[perm], delay_s + max(windows_s))
    hi = np.searchsorted(key, key - delay_s, side="right")
    cum_fraud = np.concatenate(([0], np.cumsum(fraud[perm], dtype=np.int64)))
    counts = np.empty((len(key), len(windows_s)), dtype=np.float64)
    frauds = np.empty_like(counts)
    lo = hi
    for j, w in enumerate(windows_s):
        lo = np.searchsorted(key, key - delay_s - w, side="right")
        counts[perm, j] = hi - lo
        frauds[perm, j] = cum_fraud[hi] - cum_fraud[lo]
    ages = np.empty((len(key), 2), dtype=np.float64)
    ages[perm] = _fraud_ages(sec[perm], fraud[perm].astype(bool), lo, hi, delay_s)
    return counts, frauds, ages


def _fraud_ages(
    sec: IntArray, fraud: npt.NDArray[np.bool_], lo: IntArray, hi: IntArray, delay_s: int
) -> FloatArray:
    """Seconds from the first and the last fraud row of ``[lo, hi)`` to ``sec - delay_s``,
    -1 when there is none."""
    n = len(sec)
    idx = np.arange(n)
    next_fraud = np.minimum.accumulate(np.where(fraud, idx, n)[::-1])[::-1]
    prev_fraud = np.maximum.accumulate(np.where(fraud, idx, -1))
    first = np.append(next_fraud, n)[lo]
    last = np.append(prev_fraud, -1)[hi - 1]
    known = first < hi
    reference = sec - delay_s
    out = np.full((n, 2), -1.0)
    out[known, 0] = reference[known] - sec[first[known]]
    out[known, 1] = reference[known] - sec[last[known]]
    return out


def _group_order(entity: IntArray, order: IntArray) -> IntArray:
    """Row indices grouped by entity, event-time order (ties in table order) inside."""
    return order[np.argsort(entity[order], kind="stable")]


def _entity_keys(entity: IntArray, sec: IntArray, reach_s: int) -> IntArray:
    """One sortable int64 per row: entity-major, then seconds.

    The stride leaves ``reach_s`` of room, so ``key - reach_s`` never lands on the previous
    entity's rows and ``searchsorted`` finds window bounds for all entities at once.
    """
    if len(sec) == 0:
        return np.zeros(0, dtype=np.int64)
    base = int(sec.min())
    stride = int(sec.max()) - base + reach_s + 1
    n_entities = int(entity.max()) + 1
    if n_entities * stride >= _INT64_BUDGET:
        msg = (
            f"the data spans too long a time for {n_entities} entities "
            "(int64 keys would overflow): split the file by time"
        )
        raise DataFileError(msg)
    return entity * stride + (sec - base)


class _ExactPrefix:
    """Window sums from prefix sums without the cancellation error of a float cumsum.

    Each amount is split into an integer multiple of ``2**-scale`` (summed exactly in int64)
    and a tiny remainder (summed in float64), so a window sum is accurate to about 1e-16
    relative however large the running total grows.
    """

    def __init__(self, values: FloatArray) -> None:
        total = float(np.sum(np.abs(values))) + 1.0
        self.scale = min(30, int(np.floor(np.log2(_INT64_BUDGET / total))) - 1)
        step = np.ldexp(1.0, self.scale)
        whole = np.rint(values * step).astype(np.int64)
        rest = values - whole / step
        self.whole = np.concatenate(([0], np.cumsum(whole, dtype=np.int64)))
        self.rest = np.concatenate(([0.0], np.cumsum(rest)))

    def window_sum(self, lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64]) -> FloatArray:
        """Sum of ``values[lo:hi]`` per row."""
        whole = (self.whole[hi] - self.whole[lo]).astype(np.float64)
        out: FloatArray = np.ldexp(whole, -self.scale) + (self.rest[hi] - self.rest[lo])
        return out


def _check_columns(df: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        msg = (
            f"missing column(s) {', '.join(missing)}: compute_features needs "
            f"{', '.join(REQUIRED_COLUMNS)} (read files with "
            "fraudstream.features.datafile.read_transactions)"
        )
        raise DataFileError(msg)


def _amounts(df: pd.DataFrame) -> FloatArray:
    amount = df["amount"].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(amount) | (amount < 0)
    if bad.any():
        row = int(np.argmax(bad))
        msg = f"amount at row {row} is {float(amount[row])!r}: amounts must be finite and >= 0"
        raise DataFileError(msg)
    return amount


def _fraud_flags(df: pd.DataFrame) -> IntArray:
    if "is_fraud" not in df.columns:
        logger.info("no is_fraud column: terminal risks are 0 (no labels known)")
        return np.zeros(len(df), dtype=np.int64)
    flags = df["is_fraud"].to_numpy(dtype=np.int64)
    if ((flags != 0) & (flags != 1)).any():
        msg = "is_fraud must be 0/1 or a boolean on every row"
        raise DataFileError(msg)
    return flags
