"""Replay a transaction table through an online store in event-time order, feeding each
fraud label at its transaction's event time + label delay, as production would see them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import (
    DAY_S,
    MS_PER_DAY,
    FeatureConfig,
    FloatArray,
    IntArray,
    seconds,
)
from fraudstream.features.schema import Label
from fraudstream.features.store import FeatureStore

Progress = Callable[[int], None]
"""Called with the number of transactions applied so far."""


@dataclass(frozen=True)
class LabelFeed:
    """Fraud labels in the order they become known."""

    labels: list[Label]
    """One label per fraud, by label time."""
    label_seconds: IntArray
    """Epoch second of each label's label time."""


def fraud_labels(df: pd.DataFrame, delay_days: int) -> LabelFeed:
    """A label for each ``is_fraud`` row, known ``delay_days`` after its event time."""
    if "is_fraud" not in df.columns:
        return LabelFeed([], np.zeros(0, dtype=np.int64))
    rows = df.loc[df["is_fraud"].to_numpy() == 1]
    ms = rows["event_time_ms"].to_numpy(dtype=np.int64)
    label_ms = ms + delay_days * MS_PER_DAY
    order = np.argsort(label_ms, kind="stable")
    ids = rows["transaction_id"].to_numpy()[order]
    customers = rows["customer_id"].to_numpy()[order]
    terminals = rows["terminal_id"].to_numpy()[order]
    labels = [
        Label(str(t), str(c), str(term), int(e), int(lab), True)
        for t, c, term, e, lab in zip(
            ids, customers, terminals, ms[order], label_ms[order], strict=True
        )
    ]
    return LabelFeed(labels, seconds(label_ms[order]))


def replay(
    store: FeatureStore,
    df: pd.DataFrame,
    config: FeatureConfig | None = None,
    batch_size: int = 512,
    progress: Progress | None = None,
) -> FloatArray:
    """Features of every row of ``df`` (row ``i`` for row ``i``), applied in stable
    event-time order; labels with label time up to a batch's last second go first.

    Feeding a label early changes nothing: it only counts in windows ending at or after
    its transaction's time + delay. Feeding it late would, hence "up to the last second".
    A batch never spans more than a day, so early labels cannot trim history (kept a day
    beyond the horizon) that the batch still needs.
    """
    config = config or FeatureConfig()
    order = np.argsort(df["event_time_ms"].to_numpy(), kind="stable")
    ordered = df.iloc[order]
    feed = fraud_labels(ordered, config.delay_days)
    ids = ordered["transaction_id"].astype(str).tolist()
    customers = ordered["customer_id"].astype(str).tolist()
    terminals = ordered["terminal_id"].astype(str).tolist()
    ms = ordered["event_time_ms"].to_numpy(dtype=np.int64)
    amounts = ordered["amount"].to_numpy(dtype=np.float64)
    secs = seconds(ms)
    out = np.empty((len(df), config.n_features), dtype=np.float64)
    fed = 0
    start = 0
    while start < len(df):
        day_end = int(np.searchsorted(secs, secs[start] + DAY_S, side="left"))
        stop = min(start + batch_size, len(df), max(day_end, start + 1))
        due = int(np.searchsorted(feed.label_seconds, secs[stop - 1], side="right"))
        if due > fed:
            store.apply_labels(feed.labels[fed:due])
            fed = due
        batch = TransactionBatch(
            ids[start:stop],
            customers[start:stop],
            terminals[start:stop],
            ms[start:stop],
            amounts[start:stop],
        )
        out[order[start:stop]] = store.apply(batch)
        if progress:
            progress(stop)
        start = stop
    return out
