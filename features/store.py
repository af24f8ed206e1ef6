"""The online feature store contract, shared by the Redis store and the in-process one.

A store applies transactions in order and answers each with its feature vector as of its
application; it is idempotent per ``transaction_id``; fraud labels count in the terminal's
windows at the labelled transaction's event time whenever they arrive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from features.batch import TransactionBatch
from features.definitions import (
    FeatureConfig,
    FloatArray,
    assemble_features,
    transaction_level_features,
)
from features.schema import Label

DEFAULT_TOPIC = "transactions"
SLACK_S = 86_400
"""Extra history kept beyond the largest horizon, so late redeliveries still deduplicate."""


class FeatureStore(Protocol):
    """What the scorer and the replay tools need from an online store."""

    def apply(self, batch: TransactionBatch, timeout_s: float | None = None) -> FloatArray:
        """Apply ``batch`` in order; ``(len(batch), n_features)`` float64, row i for row i.

        A transaction seen before changes nothing and gets the vector it got the first time.
        Raises ``FeatureStoreUnavailable`` when the store fails or ``timeout_s`` passes.
        """
        ...

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """Record fraud labels; returns how many were new (a repeated label counts once)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class OffsetTrackingStore(FeatureStore, Protocol):
    """A store that also records, atomically with a batch, the Kafka offsets it covers."""

    def apply(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
    ) -> FloatArray:
        """As ``FeatureStore.apply``; also raise ``topic``'s per-partition marks to
        ``offsets`` (never lowering one) in the same atomic step."""
        ...

    def applied_offsets(self, topic: str = DEFAULT_TOPIC) -> dict[int, int]:
        """Partition -> highest offset mark recorded for ``topic``."""
        ...


def raw_width(config: FeatureConfig) -> int:
    """Columns of a raw row: ms, amount, (count, sum) per customer window, (count, frauds)
    per terminal window."""
    return 2 + 2 * len(config.customer_windows_days) + 2 * len(config.terminal_windows_days)


def features_from_raw(raw: FloatArray, config: FeatureConfig) -> FloatArray:
    """Feature vectors from raw rows (see ``raw_width``)."""
    kc = len(config.customer_windows_days)
    tx = transaction_level_features(raw[:, 0].astype(np.int64), raw[:, 1], config)
    customer = raw[:, 2 : 2 + 2 * kc]
    terminal = raw[:, 2 + 2 * kc :]
    return assemble_features(
        tx, customer[:, 0::2], customer[:, 1::2], terminal[:, 0::2], terminal[:, 1::2]
    )
