"""Helpers of the store tests: batches and frames from rows (tx id, customer, terminal, ms,
amount)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.features.batch import TransactionBatch

StoreFactory = Callable[..., Any]
"""``make(**limits)`` (the ``make_store`` fixture): a fresh store of the test's kind, with
limits max_customer_records, max_terminal_records, and chunk_size for Redis."""


def batch(rows: list[tuple[str, str, str, int, float]]) -> TransactionBatch:
    """rows: (tx id, customer, terminal, ms, amount)."""
    return TransactionBatch.from_columns(*(list(col) for col in zip(*rows, strict=True)))


def batch_of(df: pd.DataFrame) -> TransactionBatch:
    return TransactionBatch.from_columns(
        df["transaction_id"].astype(str).tolist(),
        df["customer_id"].astype(str).tolist(),
        df["terminal_id"].astype(str).tolist(),
        df["event_time_ms"].to_numpy(dtype=np.int64),
        df["amount"].to_numpy(dtype=np.float64),
    )


def frame(rows: list[tuple[str, str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["transaction_id", "customer_id", "terminal_id", "event_time_ms", "amount"]
    )
