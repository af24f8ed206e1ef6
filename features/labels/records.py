"""Records of the KPI join: what the decision and label streams contribute per transaction,
and their bytes on the internal join topic. A transaction's records always go to partition
``partition_for(transaction id)``, so both sides of one transaction meet in one partition;
one message carries all of a batch's records for one partition (a send per record is what
limits faust's throughput)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from fraudstream.features.definitions import MIN_EVENT_TIME_MS
from fraudstream.features.schema import Label
from fraudstream.features.validation import check_times

DECISIONS = ("approve", "review", "decline")
"""Decision outcomes, in code order (0, 1, 2)."""


@dataclass(frozen=True, slots=True)
class JoinRecord:
    """One side of a transaction: its decision or its label."""

    transaction_id: str
    """The transaction both sides share."""
    event_time_ms: int
    """The transaction's event time: picks the hour."""
    decision: int = -1
    """Decision code (index in ``DECISIONS``), -1 on a label record."""
    amount: float = 0.0
    """The transaction's amount (decision records)."""
    is_fraud: int = -1
    """1 fraud, 0 genuine, -1 on a decision record."""

    @property
    def is_label(self) -> bool:
        return self.is_fraud >= 0


def from_label(label: Label) -> JoinRecord:
    """The join record of a decoded label."""
    return JoinRecord(label.transaction_id, label.event_time_ms, is_fraud=int(label.is_fraud))


def from_decision(value: bytes | None) -> JoinRecord | None:
    """The join record of a ``fraud.decisions`` message; None when it lacks what the KPIs
    need (a transaction id, an epoch-ms event time, a finite amount, a known decision)."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    return _decision_record(doc)


def _decision_record(doc: dict[str, Any]) -> JoinRecord | None:
    tx_id, ms, amount = doc.get("transaction_id"), doc.get("event_time"), doc.get("amount")
    decision = doc.get("decision")
    if not isinstance(tx_id, str) or not tx_id or decision not in DECISIONS:
        return None
    times, problems = check_times([ms], "event_time", MIN_EVENT_TIME_MS, None)
    if problems:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return None
    if not math.isfinite(amount):
        return None
    return JoinRecord(tx_id, times[0], DECISIONS.index(decision), float(amount))


def partition_for(transaction_id: str, partitions: int) -> int:
    """The join partition of a transaction (stable across processes and restarts)."""
    return zlib.crc32(transaction_id.encode()) % partitions


def encode(records: Sequence[JoinRecord]) -> bytes:
    """One join topic value for ``records``."""
    return orjson.dumps(
        [[r.transaction_id, r.event_time_ms, r.decision, r.amount, r.is_fraud] for r in records]
    )


def decode(value: bytes) -> list[JoinRecord]:
    """Inverse of ``encode``; raises ``ValueError`` on bytes it did not write."""
    try:
        return [
            JoinRecord(str(tx), int(ms), int(decision), float(amount), int(fraud))
            for tx, ms, decision, amount, fraud in orjson.loads(value)
        ]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        msg = f"join message {value[:80]!r} is not a list of [tx, ms, decision, amount, fraud]"
        raise ValueError(msg) from exc
