"""The handbook's evaluation protocol: train window, label delay, test window, exclusions.

Train on ``[s, s + train_days)``, skip ``delay_days`` (labels not known yet), test on the
``test_days`` that follow. For test day ``i`` the transactions of customers already known
to be compromised are removed: those with a fraud in the training window, plus those with
a fraud on the first ``i`` days of the delay period. Days are UTC days counted from ``s``.
Row selections are positions into the transaction frame, so they index the feature matrix
computed from the same frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudstream.features.exceptions import ConfigError
from fraudstream.models import metrics
from fraudstream.models.manifest import Thresholds

DAY_MS = 86_400_000
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """One train / delay / test split of a transaction frame."""

    train_start_ms: int
    """Inclusive start of the training window, epoch ms UTC."""
    train_end_ms: int
    """Exclusive end of the training window (start of the delay period)."""
    test_start_ms: int
    """Inclusive start of the test window (end of the delay period)."""
    test_end_ms: int
    """Exclusive end of the test window."""
    train_rows: IntArray
    """Positions of the training transactions."""
    test_rows: IntArray
    """Positions of the test transactions kept after the exclusions."""
    test_day: IntArray
    """Test day (0, 1, ...) of each kept test transaction."""
    excluded_rows: int
    """Test transactions removed because their customer was known to be compromised."""


@dataclass(frozen=True)
class EvalSet:
    """The arrays of a split's kept test transactions that the metrics need."""

    transaction_id: npt.NDArray[np.generic]
    """Transaction ids, for writing predictions."""
    day: IntArray
    """Test day of each transaction."""
    customer: npt.NDArray[np.generic]
    """Customer id of each transaction."""
    y: npt.NDArray[np.bool_]
    """True for frauds."""
    amount: npt.NDArray[np.float64]
    """Transaction amounts."""


def day_start_ms(value: str | date | datetime) -> int:
    """Epoch ms of UTC midnight of a date (``YYYY-MM-DD``, ``date`` or ``datetime``)."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            msg = f"dates must look like 2018-07-25, got {value!r}"
            raise ConfigError(msg) from None
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date() if value.tzinfo else value.date()
    midnight = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return int(midnight.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """ISO 8601 UTC text of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def split(
    df: pd.DataFrame,
    train_start: str | date | datetime,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
) -> Split:
    """Split ``df`` (canonical columns) by the handbook protocol starting at ``train_start``."""
    _check_days(train_days, delay_days, test_days)
    start = day_start_ms(train_start)
    train_end = start + train_days * DAY_MS
    test_start = train_end + delay_days * DAY_MS
    test_end = test_start + test_days * DAY_MS
    times = df["event_time_ms"].to_numpy(dtype=np.int64)
    train_rows = np.flatnonzero((times >= start) & (times < train_end))
    in_test = (times >= test_start) & (times < test_end)
    day = (times - test_start) // DAY_MS
    keep = in_test & ~_known_compromised(df, start, train_end, test_start, day)
    test_rows = np.flatnonzero(keep)
    return Split(
        train_start_ms=start,
        train_end_ms=train_end,
        test_start_ms=test_start,
        test_end_ms=test_end,
        train_rows=train_rows.astype(np.int64),
        test_rows=test_rows.astype(np.int64),
        test_day=day[test_rows].astype(np.int64),
        excluded_rows=int(in_test.sum() - keep.sum()),
    )


def _check_days(train_days: int, delay_days: int, test_days: int) -> None:
    if train_days < 1 or test_days < 1 or delay_days < 0:
        msg = "need train_days >= 1, delay_days >= 0, test_days >= 1; got "
        msg += f"{train_days}, {delay_days}, {test_days}"
        raise ConfigError(msg)


def _known_compromised(
    df: pd.DataFrame, start: int, train_end: int, test_start: int, day: IntArray
) -> npt.NDArray[np.bool_]:
    """True for rows whose customer is known compromised on the row's test day.

    A customer's first fraud at or after ``start`` becomes known on test day 0 when it is
    in the training window and on test day ``i + 1`` when it is on delay day ``i``; frauds
    after the delay period never count.
    """
    times = df["event_time_ms"].to_numpy(dtype=np.int64)
    fraud = df["is_fraud"].to_numpy().astype(bool) & (times >= start) & (times < test_start)
    frauds = pd.DataFrame({"customer": df["customer_id"].to_numpy()[fraud], "t": times[fraud]})
    first = frauds.groupby("customer", sort=False)["t"].min()
    first_ms = first.to_numpy(dtype=np.int64)
    known_from = np.where(first_ms < train_end, 0, (first_ms - train_end) // DAY_MS + 1)
    known_day = pd.Series(known_from, index=first.index)
    row_known = df["customer_id"].map(known_day).to_numpy(dtype=np.float64, na_value=np.inf)
    return row_known <= day


def eval_set(df: pd.DataFrame, split: Split) -> EvalSet:
    """The kept test transactions of ``split`` as arrays."""
    rows = df.iloc[split.test_rows]
    return EvalSet(
        transaction_id=rows["transaction_id"].to_numpy(),
        day=split.test_day,
        customer=rows["customer_id"].to_numpy(),
        y=rows["is_fraud"].to_numpy().astype(bool),
        amount=rows["amount"].to_numpy(dtype=np.float64),
    )


def evaluate(
    test: EvalSet, scores: npt.ArrayLike, thresholds: Thresholds, k: int = 100
) -> dict[str, float]:
    """Every protocol metric for ``scores`` on ``test``, keyed by name."""
    values = np.asarray(scores, dtype=np.float64)
    card = metrics.card_precision_at_k(test.day, test.customer, test.y, values, k)
    caught, caught_share = metrics.fraud_amount_caught(
        test.y, values, test.amount, thresholds.review
    )
    return {
        "roc_auc": metrics.roc_auc(test.y, values),
        "average_precision": metrics.average_precision(test.y, values),
        f"card_precision_at_{k}": card.mean,
        "alert_rate": metrics.alert_rate(values, thresholds.review),
        "recall_at_review": metrics.recall_at_threshold(test.y, values, thresholds.review),
        "decline_precision": metrics.precision_at_threshold(test.y, values, thresholds.decline),
        "fraud_amount_caught": caught,
        "fraud_amount_caught_share": caught_share,
        "calibration_ratio": metrics.calibration_ratio(test.y, values),
        "expected_calibration_error": metrics.expected_calibration_error(test.y, values),
        "transactions": float(test.y.size),
        "frauds": float(test.y.sum()),
    }
