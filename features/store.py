"""The online feature store contract, shared by the Redis store and the in-process one.

A store applies transactions in order and answers each with its feature vector as of its
application; it is idempotent per ``transaction_id``; fraud labels count in the terminal's
windows at the labelled transaction's event time whenever they arrive.

What a store keeps, and when a row is flagged (the same in every store):

- **Identity.** A transaction id is bound to the content it was first applied with (a
  fingerprint of customer, terminal, event time and amount). The same id with the same
  content is a redelivery: nothing changes, and the first vector is returned. The same id
  with other content is a *conflict* (``FLAG_CONFLICT``): the store is left untouched and
  the row gets the vector it would get if it were applied, computed read-only.
- **Trimming.** Each customer and terminal history is trimmed by event time, at its
  reference second minus its keep (``keeps``): the reference is the entity's second-newest
  record, or the row's watermark when that is lower, so no single record, however far
  ahead it is dated, can move it. Trimming happens in steps of ``TRIM_STEP`` records.
  A row whose event second is at or before what its entity has trimmed is not added.
- **Cap.** A history holds at most ``max_customer_records`` / ``max_terminal_records``
  records; beyond that its ``TRIM_STEP`` oldest go (whole seconds), and rows whose windows
  reach back to them are flagged ``FLAG_CAPPED``.
- **Exactness.** A row's features equal the offline computation over the records applied
  before it whenever it is not flagged ``FLAG_OUTLIER`` or ``FLAG_CAPPED``; in event-time
  order, and out of order by up to ``SLACK_S`` behind the entity's newest records, rows
  are never flagged for trimming.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import (
    AMOUNT_HISTORY_WIDTH,
    FRAUD_AGES_WIDTH,
    FeatureConfig,
    FloatArray,
    IntArray,
    assemble_features,
    seconds,
    transaction_level_features,
)
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.schema import Label

DEFAULT_TOPIC = "transactions"
SLACK_S = 86_400
"""Extra history kept beyond the largest horizon, so late redeliveries still deduplicate."""
ROWS_PERIOD_S = 7 * 86_400
"""Stored vectors are kept per customer and per period of this much event time, and a
period's are forgotten once the customer's history is trimmed past it."""
TRIM_STEP = 16
"""Histories are trimmed (by time or by the cap) in steps of at least this many records."""
MAX_CUSTOMER_RECORDS = 16_384
"""Default cap of one customer's history (about 550 transactions a day over 30 days)."""
MAX_TERMINAL_RECORDS = 65_536
"""Default cap of one terminal's history (about 1,700 transactions a day over 38 days)."""
AHEAD_TOLERANCE_S = SLACK_S
"""A row dated more than this after its watermark is flagged ``FLAG_OUTLIER``."""

FLAG_CONFLICT = 1
"""The transaction id was first applied with other content; this row changed nothing."""
FLAG_OUTLIER = 2
"""The row's event time is far from its stream: more than ``AHEAD_TOLERANCE_S`` after its
watermark, or at least a customer keep before it; or its windows reach back into history
its customer or terminal has already trimmed (its features may miss records)."""
FLAG_CAPPED = 4
"""The row's windows reach back into records dropped by a history cap (a hot key)."""


class FeatureStore(Protocol):
    """What the scorer and the replay tools need from an online store."""

    def apply(self, batch: TransactionBatch, timeout_s: float | None = None) -> FloatArray:
        """Apply ``batch`` in order; ``(len(batch), n_features)`` float64, row i for row i.

        A transaction seen before changes nothing and gets the vector it got the first time.
        Raises ``FeatureStoreUnavailable`` when the store fails or ``timeout_s`` passes.
        """
        ...

    def apply_flagged(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
        watermark_s: npt.ArrayLike | None = None,
    ) -> tuple[FloatArray, IntArray]:
        """As ``apply`` (``offsets`` and ``topic`` as ``OffsetTrackingStore.apply``), and
        each row's flags: an int64 bitmask of ``FLAG_CONFLICT``, ``FLAG_OUTLIER`` and
        ``FLAG_CAPPED``.

        ``watermark_s``: per row, the event-time second its stream has reached (e.g. its
        partition's), or None. A watermark only ever keeps more history (trimming follows
        the lower of it and the entity's own reference) and lets rows dated far ahead of
        it be flagged; rows without one are trimmed and flagged by their entities alone.
        """
        ...

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """Record fraud labels; returns how many were new (a repeated label counts once)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class OffsetTrackingStore(FeatureStore, Protocol):
    """A store that also records, with a batch, the Kafka offsets it covers: a mark is
    raised only once every row of its batch is applied."""

    def apply(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
    ) -> FloatArray:
        """As ``FeatureStore.apply``; also raise ``topic``'s per-partition marks to
        ``offsets`` (never lowering one) once the whole batch is applied."""
        ...

    def applied_offsets(self, topic: str = DEFAULT_TOPIC) -> dict[int, int]:
        """Partition -> highest offset mark recorded for ``topic``."""
        ...


def raw_width(config: FeatureConfig) -> int:
    """Columns of a raw row: ms, amount, (count, sum) per customer window, the amount
    history (``AMOUNT_HISTORY_WIDTH``), (count, frauds) per terminal window, the fraud
    ages (``FRAUD_AGES_WIDTH``)."""
    kc, kt = len(config.customer_windows_days), len(config.terminal_windows_days)
    return 2 + 2 * kc + AMOUNT_HISTORY_WIDTH + 2 * kt + FRAUD_AGES_WIDTH


def features_from_raw(raw: FloatArray, config: FeatureConfig) -> FloatArray:
    """Feature vectors from raw rows (see ``raw_width``)."""
    kc = len(config.customer_windows_days)
    tx = transaction_level_features(raw[:, 0].astype(np.int64), raw[:, 1], config)
    customer = raw[:, 2 : 2 + 2 * kc]
    history = raw[:, 2 + 2 * kc : 2 + 2 * kc + AMOUNT_HISTORY_WIDTH]
    terminal = raw[:, 2 + 2 * kc + AMOUNT_HISTORY_WIDTH : -FRAUD_AGES_WIDTH]
    ages = raw[:, -FRAUD_AGES_WIDTH:]
    return assemble_features(
        tx,
        customer[:, 0::2],
        customer[:, 1::2],
        terminal[:, 0::2],
        terminal[:, 1::2],
        history,
        ages,
    )


def keeps(config: FeatureConfig) -> tuple[int, int]:
    """Seconds of history kept behind the reference: (customer, terminal)."""
    customer = max(config.customer_windows_s) + SLACK_S
    terminal = config.delay_s + max(config.terminal_windows_s) + SLACK_S
    return customer, terminal


def check_caps(max_customer_records: int, max_terminal_records: int) -> None:
    """Refuse caps too small to trim in steps of ``TRIM_STEP``."""
    for name, cap in (
        ("max_customer_records", max_customer_records),
        ("max_terminal_records", max_terminal_records),
    ):
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 2 * TRIM_STEP:
            msg = f"{name} must be a whole number >= {2 * TRIM_STEP}, got {cap!r}"
            raise ConfigError(msg)


def watermarks(batch: TransactionBatch, watermark_s: npt.ArrayLike | None) -> FloatArray:
    """Per row watermark second as float64, NaN where there is none."""
    n = len(batch)
    if watermark_s is None:
        return np.full(n, np.nan)
    out = np.asarray(watermark_s, dtype=np.float64).reshape(-1)
    if out.shape[0] != n:
        msg = f"watermark_s has {out.shape[0]} values for a batch of {n} rows"
        raise ValueError(msg)
    return out


def watermark_flags(batch: TransactionBatch, wm: FloatArray, config: FeatureConfig) -> IntArray:
    """``FLAG_OUTLIER`` where a row is dated more than ``AHEAD_TOLERANCE_S`` after its
    watermark or a customer keep or more before it (no flag where there is none)."""
    sec = seconds(batch.event_time_ms).astype(np.float64)
    far = (sec > wm + AHEAD_TOLERANCE_S) | (sec <= wm - keeps(config)[0])
    return np.where(far, FLAG_OUTLIER, 0).astype(np.int64)


def fingerprints(batch: TransactionBatch) -> bytes:
    """8 bytes per row identifying its content: a BLAKE2b digest of the customer and the
    terminal (each with its length, so that no two contents share an encoding), the event
    ms and the amount's bits. Stored with every transaction id: never change it."""
    blake = hashlib.blake2b
    amounts = batch.amount.astype("<f8").tobytes()
    out = []
    for i, (customer, terminal, ms) in enumerate(
        zip(batch.customer_id, batch.terminal_id, batch.event_time_ms.tolist(), strict=True)
    ):
        c, t = customer.encode(), terminal.encode()
        blob = b"%d:%b%d:%b%d:" % (len(c), c, len(t), t, ms)
        out.append(blake(blob + amounts[8 * i : 8 * i + 8], digest_size=8).digest())
    return b"".join(out)
