"""Hourly model-quality KPIs from the join's statistics: decisions by outcome, confirmed
frauds, precision of reviews and declines, fraud amount caught versus missed.

Precision of an outcome = confirmed frauds among its decisions / its decisions: a decision
without a fraud label counts as genuine, so precision rises as labels arrive (chargebacks
come days later). It is None for an hour without decisions of that outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fraudstream.features.labels.join import (
    AMOUNTS,
    DECIDED,
    FRAUDS,
    LABELLED,
    UNDECIDED,
    WIDTH,
    HourStats,
)
from fraudstream.features.labels.records import DECISIONS

APPROVE, REVIEW, DECLINE = 0, 1, 2


@dataclass(frozen=True)
class HourKpis:
    """The KPIs of one hour of event time (summed over the join partitions held here)."""

    start_s: int
    """Hour start, epoch seconds UTC."""
    totals: tuple[float, ...]
    """The summed statistics (``fraudstream.features.labels.join`` layout; the mark slot is
    unused)."""

    @property
    def hour(self) -> str:
        return datetime.fromtimestamp(self.start_s, UTC).strftime("%Y-%m-%dT%H:00:00Z")

    def decisions(self, code: int) -> int:
        return int(self.totals[DECIDED + code])

    def frauds(self, code: int) -> int:
        return int(self.totals[FRAUDS + code])

    @property
    def confirmed_frauds(self) -> int:
        return sum(self.frauds(c) for c in range(3)) + int(self.totals[UNDECIDED])

    def precision(self, code: int) -> float | None:
        n = self.decisions(code)
        return self.frauds(code) / n if n else None

    @property
    def caught_amount(self) -> float:
        return self.totals[AMOUNTS + REVIEW] + self.totals[AMOUNTS + DECLINE]

    @property
    def missed_amount(self) -> float:
        return self.totals[AMOUNTS + APPROVE]

    def to_json(self) -> dict[str, Any]:
        return {
            "hour": self.hour,
            "hour_start_ms": self.start_s * 1000,
            "decisions": {name: self.decisions(c) for c, name in enumerate(DECISIONS)},
            "labels": int(self.totals[LABELLED]),
            "confirmed_frauds": self.confirmed_frauds,
            "confirmed_frauds_by_decision": {
                **{name: self.frauds(c) for c, name in enumerate(DECISIONS)},
                "undecided": int(self.totals[UNDECIDED]),
            },
            "precision": {"review": self.precision(REVIEW), "decline": self.precision(DECLINE)},
            "fraud_amount": {"caught": self.caught_amount, "missed": self.missed_amount},
        }


def summarize(rows: Iterable[tuple[int, HourStats]], last: int | None = None) -> list[HourKpis]:
    """Per-hour KPIs, oldest first, from (hour start s, statistics) rows (one per partition
    and hour); only the ``last`` most recent hours when given."""
    sums: dict[int, list[float]] = {}
    for start_s, stats in rows:
        total = sums.setdefault(start_s, [0.0] * WIDTH)
        for i in range(1, WIDTH):
            total[i] += stats[i]
    hours = sorted(sums)
    if last is not None:
        hours = hours[-last:] if last > 0 else []
    return [HourKpis(h, tuple(sums[h])) for h in hours]
