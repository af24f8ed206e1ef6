"""Store-level features prototyped offline, to measure what they would be worth online.

Each is point-in-time like the stores' features: a customer feature sees the customer's
earlier transactions (event-time order, ties in table order), a terminal feature sees
only the delayed window ``(t - d - w, t - d]`` whose labels are known by ``t``. None of
them exists in the online stores; the ablation (``evaluate_seeds.py``) appends them to
the feature matrix to tell which are worth adding to the Redis scripts and memory store.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudstream.features.definitions import DAY_S, FeatureConfig
from fraudstream.features.offline import compute_features

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
WINDOW_S = 30 * DAY_S


def customer_seconds_since_previous(df: pd.DataFrame) -> dict[str, FloatArray]:
    """Seconds since the customer's previous transaction (NaN for a first one)."""
    sec, customer, order = _by_entity(df, "customer_id")
    ts = sec[order]
    same = np.r_[False, customer[order][1:] == customer[order][:-1]]
    gap = np.where(same, ts - np.r_[ts[:1], ts[:-1]], np.nan)
    return {"customer_seconds_since_previous": _unsort(gap, order)}


def customer_amount_history(df: pd.DataFrame) -> dict[str, FloatArray]:
    """The amount against the customer's earlier 30 days: z-score (mean and variance of
    the earlier amounts, +1 in the variance so constant histories stay finite; NaN with
    fewer than two) and the earlier maximum (NaN without one)."""
    sec, customer, order = _by_entity(df, "customer_id")
    amount = df["amount"].to_numpy(dtype=np.float64)[order]
    key = _keys(customer[order], sec[order], WINDOW_S)
    pos = np.arange(len(key))
    lo = np.searchsorted(key, key - WINDOW_S, side="right")
    count = pos - lo
    sums = np.r_[0.0, np.cumsum(amount)]
    squares = np.r_[0.0, np.cumsum(amount**2)]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (sums[pos] - sums[lo]) / count
        var = np.maximum((squares[pos] - squares[lo]) / count - mean**2, 0.0)
        z = np.where(count > 1, (amount - mean) / np.sqrt(var + 1.0), np.nan)
    return {
        "customer_amount_z_30d": _unsort(z, order),
        "customer_max_amount_30d": _unsort(_earlier_max(amount, lo, pos), order),
    }


def customer_terminal_count(df: pd.DataFrame) -> dict[str, FloatArray]:
    """The customer's earlier transactions at this terminal in the last 30 days."""
    sec = df["event_time_ms"].to_numpy(dtype=np.int64) // 1000
    pair = pd.factorize(df["customer_id"].astype(str) + "\x00" + df["terminal_id"].astype(str))
    codes = pair[0].astype(np.int64)
    order = np.lexsort((np.arange(len(df)), sec, codes))
    key = _keys(codes[order], sec[order], WINDOW_S)
    count = np.arange(len(key)) - np.searchsorted(key, key - WINDOW_S, side="right")
    return {"customer_terminal_nb_tx_30d": _unsort(count.astype(np.float64), order)}


def terminal_fraud_ages(df: pd.DataFrame, delay_days: int = 7) -> dict[str, FloatArray]:
    """Seconds from the first and from the last fraud of the terminal's delayed 30-day
    window to ``t - d`` (NaN without a fraud): how long a compromise has been known, which
    tells one that is still running from one that is over."""
    sec, terminal, order = _by_entity(df, "terminal_id")
    fraud = df["is_fraud"].to_numpy().astype(bool)[order]
    delay = delay_days * DAY_S
    ts = sec[order]
    key = _keys(terminal[order], ts, delay + WINDOW_S)
    hi = np.searchsorted(key, key - delay, side="right")
    lo = np.searchsorted(key, key - delay - WINDOW_S, side="right")
    n = len(key)
    first = np.r_[np.minimum.accumulate(np.where(fraud, np.arange(n), n)[::-1])[::-1], n][lo]
    last = np.maximum.accumulate(np.where(fraud, np.arange(n), -1))[np.maximum(hi - 1, 0)]
    known = (first < hi) & (hi > lo)
    reference = ts - delay
    first_age = np.where(known, reference - ts[np.minimum(first, n - 1)], np.nan)
    last_age = np.where(known, reference - ts[np.maximum(last, 0)], np.nan)
    return {
        "terminal_first_fraud_age_s": _unsort(first_age, order),
        "terminal_last_fraud_age_s": _unsort(last_age, order),
    }


def terminal_60d(df: pd.DataFrame) -> dict[str, FloatArray]:
    """The delayed 60-day terminal window: a configured window, no new store state."""
    config = FeatureConfig(terminal_windows_days=(1, 7, 30, 60))
    x = compute_features(df, config)
    names = config.feature_names
    return {name: x[:, names.index(name)] for name in ("terminal_nb_tx_60d", "terminal_risk_60d")}


PROTOTYPES: dict[str, Callable[[pd.DataFrame], dict[str, FloatArray]]] = {
    "customer_gap": customer_seconds_since_previous,
    "customer_amount_history": customer_amount_history,
    "customer_terminal": customer_terminal_count,
    "terminal_fraud_ages": terminal_fraud_ages,
    "terminal_60d": terminal_60d,
}
"""Prototype group -> the function computing its columns."""


def _by_entity(df: pd.DataFrame, column: str) -> tuple[IntArray, IntArray, IntArray]:
    """Seconds, entity codes and the row order grouping by entity, by time inside."""
    sec = df["event_time_ms"].to_numpy(dtype=np.int64) // 1000
    entity = pd.factorize(df[column])[0].astype(np.int64)
    return sec, entity, np.lexsort((np.arange(len(df)), sec, entity))


def _keys(entity: IntArray, sec: IntArray, reach_s: int) -> IntArray:
    """Entity-major sortable keys with room for ``reach_s`` between entities."""
    base = int(sec.min()) if sec.size else 0
    stride = (int(sec.max()) - base if sec.size else 0) + reach_s + 1
    return entity * stride + (sec - base)


def _earlier_max(values: FloatArray, lo: IntArray, pos: IntArray) -> FloatArray:
    """``max(values[lo[i]:pos[i]])`` per row (NaN when empty); windows hold a few dozen
    rows, so one vectorised pass per look-back step is enough."""
    out = np.full(len(values), -np.inf)
    length = pos - lo
    for back in range(1, int(length.max(initial=0)) + 1):
        rows = np.flatnonzero(length >= back)
        out[rows] = np.maximum(out[rows], values[pos[rows] - back])
    return np.where(length > 0, out, np.nan)


def _unsort(values: FloatArray, order: IntArray) -> FloatArray:
    out = np.empty(len(order), dtype=np.float64)
    out[order] = values
    return out
