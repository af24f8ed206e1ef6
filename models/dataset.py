"""Feature matrices for protocol windows, computed point-in-time from a transaction frame.

Only transactions before the end of the window of interest are given to the offline
feature computation, so no value can come from after it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.models.exceptions import TrainingError
from fraudstream.models.protocol import iso_ms

FINGERPRINT_COLUMNS = ("transaction_id", "event_time_ms", "customer_id", "terminal_id", "amount")


@dataclass(frozen=True)
class Dataset:
    """Transactions before a cut-off with their features and labels, row for row."""

    df: pd.DataFrame
    """Canonical transactions with ``event_time_ms`` before the cut-off."""
    x: npt.NDArray[np.float32]
    """Features, (rows, n_features), float32 as the scorer takes them."""
    y: npt.NDArray[np.int8]
    """``is_fraud`` (0 where the column is absent)."""


def features_until(df: pd.DataFrame, end_ms: int, config: FeatureConfig) -> Dataset:
    """Features of every transaction before ``end_ms``, from the history before it only."""
    times = df["event_time_ms"].to_numpy(dtype=np.int64)
    head = df.iloc[np.flatnonzero(times < end_ms)].reset_index(drop=True)
    if head.empty:
        first = iso_ms(int(times.min())) if times.size else "no rows"
        msg = f"no transactions before {iso_ms(end_ms)} (data starts {first}); pick a later date"
        raise TrainingError(msg)
    x = compute_features(head, config).astype(np.float32)
    if "is_fraud" in head:
        y = head["is_fraud"].to_numpy().astype(np.int8)
    else:
        y = np.zeros(len(head), dtype=np.int8)
    return Dataset(head, x, y)


def fingerprint(df: pd.DataFrame, rows: npt.NDArray[np.int64]) -> str:
    """Stable hash of the given rows (ids, times, entities, amounts, labels)."""
    columns = [c for c in (*FINGERPRINT_COLUMNS, "is_fraud") if c in df]
    hashed = pd.util.hash_pandas_object(df.iloc[rows][columns], index=False)
    digest = hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()
    return f"{len(rows)}:{digest[:32]}"
