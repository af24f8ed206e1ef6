"""The feature vector: its names, its windows, and the per-transaction part of it.

Everything that decides *what* a feature means lives here, so the online stores and the
offline computation share one definition: windows are half-open ``(t - w, t]`` at
one-second resolution; terminal windows are shifted back by the label delay ``d``.
Derived features (functions of the window aggregates, no store state of their own) are
appended by ``assemble_features``, where every store and the offline path end.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from fraudstream.features.exceptions import ConfigError

DAY_S = 86_400
MS_PER_S = 1_000
MS_PER_DAY = DAY_S * MS_PER_S
NIGHT_LAST_HOUR = 6  # night = hour <= 6
MIN_EVENT_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: older event times are bad input
MAX_AMOUNT = 1e9
# 1970-01-01 was a Thursday; with Monday = 0 that is weekday 3.
_EPOCH_WEEKDAY = 3

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FEATURE_SET_VERSION = 4
"""Layout of the feature vector; models record it and are refused when it differs.
1: the handbook's 15 features; 2: those plus ``customer_amount_ratio_{w}d`` per customer
window (the amount over the window's mean amount); 3: those plus the amount against the
customer's earlier amounts (z-score, maximum) over the widest customer window and the age
of the first and last known fraud in the widest delayed terminal window; 4: set 3 without
the z-score (``models/README.md``: it added nothing, at a Redis cost)."""
CENTS_CAP = 2**26 - 1
"""The maximum takes amounts in whole cents, at most this many (671,088.63): exact
integers in int64, in Python and in the doubles of Redis's Lua."""

FEATURE_NAMES: tuple[str, ...] = (
    "tx_amount",
    "tx_during_weekend",
    "tx_during_night",
    "customer_nb_tx_1d",
    "customer_avg_amount_1d",
    "customer_nb_tx_7d",
    "customer_avg_amount_7d",
    "customer_nb_tx_30d",
    "customer_avg_amount_30d",
    "terminal_nb_tx_1d",
    "terminal_risk_1d",
    "terminal_nb_tx_7d",
    "terminal_risk_7d",
    "terminal_nb_tx_30d",
    "terminal_risk_30d",
    "customer_amount_ratio_1d",
    "customer_amount_ratio_7d",
    "customer_amount_ratio_30d",
    "customer_max_amount_30d",
    "terminal_first_fraud_age_s_30d",
    "terminal_last_fraud_age_s_30d",
)
TRANSACTION_LEVEL_NAMES: tuple[str, ...] = FEATURE_NAMES[:3]


@dataclass(frozen=True)
class FeatureConfig:
    """Windows, label delay and time zone of the feature vector."""

    customer_windows_days: tuple[int, ...] = (1, 7, 30)
    """Customer windows ``(t - w, t]`` in whole days, ascending."""
    terminal_windows_days: tuple[int, ...] = (1, 7, 30)
    """Terminal windows ``(t - d - w, t - d]`` in whole days, ascending."""
    delay_days: int = 7
    """Label delay ``d``: terminal windows end this many days before the transaction."""
    tz: str = "UTC"
    """IANA time zone for the weekend and night flags."""

    def __post_init__(self) -> None:
        for name in ("customer_windows_days", "terminal_windows_days"):
            _check_windows(name, getattr(self, name))
        if isinstance(self.delay_days, bool) or not isinstance(self.delay_days, int):
            msg = f"delay_days must be a whole number of days, got {self.delay_days!r}"
            raise ConfigError(msg)
        if self.delay_days < 1:
            msg = (
                f"delay_days must be at least 1 (got {self.delay_days}): terminal windows "
                "must end before the transaction so cross-partition order cannot change them"
            )
            raise ConfigError(msg)
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"tz {self.tz!r} is not an IANA time zone name (e.g. 'UTC', 'Europe/Paris')"
            raise ConfigError(msg) from exc

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Ordered names of the vector for these windows (``FEATURE_NAMES`` by default)."""
        names = list(TRANSACTION_LEVEL_NAMES)
        for w in self.customer_windows_days:
            names += [f"customer_nb_tx_{w}d", f"customer_avg_amount_{w}d"]
        for w in self.terminal_windows_days:
            names += [f"terminal_nb_tx_{w}d", f"terminal_risk_{w}d"]
        names += [f"customer_amount_ratio_{w}d" for w in self.customer_windows_days]
        names.append(f"customer_max_amount_{self.customer_windows_days[-1]}d")
        wt = self.terminal_windows_days[-1]
        names += [f"terminal_first_fraud_age_s_{wt}d", f"terminal_last_fraud_age_s_{wt}d"]
        return tuple(names)

    @property
    def feature_set_version(self) -> int:
        """``FEATURE_SET_VERSION``: the layout these names follow."""
        return FEATURE_SET_VERSION

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def delay_s(self) -> int:
        return self.delay_days * DAY_S

    @property
    def customer_windows_s(self) -> tuple[int, ...]:
        return tuple(w * DAY_S for w in self.customer_windows_days)

    @property
    def terminal_windows_s(self) -> tuple[int, ...]:
        return tuple(w * DAY_S for w in self.terminal_windows_days)

    def describe(self) -> dict[str, Any]:
        """Feature set version, windows, delay and time zone (what a manifest records)."""
        return {
            "feature_set_version": self.feature_set_version,
            "customer_windows_days": list(self.customer_windows_days),
            "terminal_windows_days": list(self.terminal_windows_days),
            "delay_days": self.delay_days,
            "tz": self.tz,
        }

    def schema_hash(self) -> str:
        """sha256 over the ordered names, the feature set version, windows, delay and time
        zone; models record it."""
        payload = {"names": list(self.feature_names), **self.describe()}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def _check_windows(name: str, windows: tuple[int, ...]) -> None:
    ok = (
        isinstance(windows, tuple)
        and len(windows) > 0
        and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in windows)
        and list(windows) == sorted(set(windows))
    )
    if not ok:
        msg = (
            f"{name} must be a non-empty ascending tuple of distinct whole days >= 1, "
            f"got {windows!r}"
        )
        raise ConfigError(msg)


def seconds(event_time_ms: npt.ArrayLike) -> IntArray:
    """Epoch seconds (floor) of epoch milliseconds: the resolution every window uses."""
    return np.floor_divide(np.asarray(event_time_ms, dtype=np.int64), MS_PER_S)


def transaction_level_features(
    event_time_ms: npt.ArrayLike, amount: npt.ArrayLike, config: FeatureConfig | None = None
) -> FloatArray:
    """``tx_amount``, ``tx_during_weekend``, ``tx_during_night`` as an ``(n, 3)`` float array.

    These need no store, so the scorer keeps them when the store is down.
    """
    config = config or FeatureConfig()
    ms = np.asarray(event_time_ms, dtype=np.int64)
    out = np.empty((ms.shape[0], 3), dtype=np.float64)
    out[:, 0] = np.asarray(amount, dtype=np.float64)
    if config.tz == "UTC":
        days = np.floor_divide(ms, MS_PER_DAY)
        weekday = (days + _EPOCH_WEEKDAY) % 7
        hour = np.floor_divide(ms - days * MS_PER_DAY, 3_600_000)
    else:
        import pandas as pd  # here only: the scoring path never loads pandas otherwise

        local = pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True)).tz_convert(config.tz)
        weekday = np.asarray(local.day_of_week, dtype=np.int64)
        hour = np.asarray(local.hour, dtype=np.int64)
    out[:, 1] = weekday >= 5
    out[:, 2] = hour <= NIGHT_LAST_HOUR
    return out


def assemble_features(
    tx_level: FloatArray,
    customer_counts: FloatArray,
    customer_sums: FloatArray,
    terminal_counts: FloatArray,
    terminal_frauds: FloatArray,
    amount_history: FloatArray,
    fraud_ages: FloatArray,
) -> FloatArray:
    """Lay window aggregates out in ``feature_names`` order, derived features last.

    Every store and the offline path end here, so averages, risks and ratios are divided
    the same way everywhere: ``avg = sum / count`` (count >= 1, the current transaction is
    in the window), ``risk = frauds / count``, 0 when the window is empty, and
    ``customer_amount_ratio = amount / avg``, 1 when the average is 0 (every amount in the
    window is 0, the current one too). ``amount_history`` (``AMOUNT_HISTORY_WIDTH``
    columns) becomes ``customer_max_amount`` (``amount_history_features``), and
    ``fraud_ages`` (``FRAUD_AGES_WIDTH``) the terminal fraud ages (-1 is NaN: no fraud
    known).
    """
    n = tx_level.shape[0]
    kc = customer_counts.shape[1]
    kt = terminal_counts.shape[1]
    out = np.empty((n, 3 + 3 * kc + 2 * kt + 1 + FRAUD_AGES_WIDTH), dtype=np.float64)
    out[:, :3] = tx_level
    out[:, 3 : 3 + 2 * kc : 2] = customer_counts
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.where(customer_counts > 0, customer_sums / customer_counts, 0.0)
        risk = np.where(terminal_counts > 0, terminal_frauds / terminal_counts, 0.0)
    out[:, 4 : 4 + 2 * kc : 2] = avg
    base = 3 + 2 * kc
    out[:, base : base + 2 * kt : 2] = terminal_counts
    out[:, base + 1 : base + 2 * kt : 2] = risk
    out[:, base + 2 * kt : base + 2 * kt + kc] = amount_ratios(tx_level[:, 0], avg)
    out[:, -3] = amount_history_features(amount_history)
    out[:, -2:] = np.where(fraud_ages >= 0, fraud_ages, np.nan)
    return out


def amount_ratios(amount: FloatArray, averages: FloatArray) -> FloatArray:
    """``amount / average`` per customer window (columns of ``averages``); 1 where the
    average is 0. A compromised card's amounts stand out against its own history."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(averages > 0, amount[:, None] / averages, 1.0)
    return np.asarray(ratio, dtype=np.float64)


AMOUNT_HISTORY_WIDTH = 1
"""Columns a store gives per row for the amount history, over the customer's earlier
records in the widest window (``(t - w, t]``, before the row in event-time order): their
largest amount in whole ``cents`` (-1 when there is none), an exact integer."""
FRAUD_AGES_WIDTH = 2
"""Columns a store gives per row for the terminal's known frauds: seconds from the first
and from the last fraud of the widest delayed window ``(t - d - w, t - d]`` to ``t - d``
(-1 when the window has none)."""


def cents(amount: npt.ArrayLike) -> FloatArray:
    """Whole cents of amounts, half up, at most ``CENTS_CAP`` (as float64: the same
    operations give the same value in numpy, Python and Lua)."""
    x = np.asarray(amount, dtype=np.float64)
    return np.asarray(np.minimum(np.floor(x * 100.0 + 0.5), CENTS_CAP), dtype=np.float64)


def amount_history_features(history: FloatArray) -> FloatArray:
    """``customer_max_amount``: the largest earlier amount (to the cent), NaN without one.
    Computed here from the stores' exact integers, so every store and the offline path
    agree to the bit."""
    largest = history[:, 0]
    return np.asarray(np.where(largest >= 0, largest / 100.0, np.nan), dtype=np.float64)
