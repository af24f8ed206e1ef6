"""Decision records (the ``fraud.decisions`` contract), their encoding, and the rule fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

DECISIONS = ("approve", "review", "decline")
APPROVE, REVIEW, DECLINE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer for one transaction, as published on ``fraud.decisions``."""

    transaction_id: str
    """Id of the decided transaction."""
    customer_id: str
    """Customer (also the message key)."""
    terminal_id: str
    """Terminal."""
    amount: float
    """Transaction amount."""
    event_time: int
    """Event time, epoch milliseconds UTC."""
    score: float
    """Fraud probability from the model (or the rule's score on the rules rung)."""
    decision: str
    """approve, review or decline."""
    model_version: str | None
    """Model that scored it; None on the rules rung without a model."""
    reasons: list[dict[str, Any]]
    """Top feature contributions (review / decline only)."""
    latency_ms: dict[str, float]
    """``total`` (Kafka timestamp to decision) and one entry per stage."""
    budget_ms: float | None
    """The budget it was held to (None in backtests)."""
    deadline_met: bool
    """``latency_ms.total <= budget_ms``."""
    degraded: str | None
    """None, or the ladder rung used: truncated_model, partial_features, rules."""
    scored_at: int
    """When the decision was made, epoch milliseconds."""
    flags: list[str] = field(default_factory=list)
    """What the feature store found about the transaction (empty: nothing):
    ``conflicting_duplicate`` (its id was first seen with other content; decided on its own
    content, the store untouched), ``event_time_outlier`` (dated far from its partition's
    stream), ``history_capped`` (its windows reach into a hot key's capped history)."""

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True)
class Rules:
    """The rule fallback: amount thresholds (used without a model or without time for one)."""

    review_amount: float = 220.0
    """Review at or above this amount."""
    decline_amount: float = 5_000.0
    """Decline at or above this amount."""
    review_score: float = 0.5
    """Score reported for a rule review."""
    decline_score: float = 0.95
    """Score reported for a rule decline."""

    def decide(self, amount: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decision codes and scores for a batch of amounts."""
        codes = np.where(
            amount >= self.decline_amount,
            DECLINE,
            np.where(amount >= self.review_amount, REVIEW, APPROVE),
        ).astype(np.int8)
        scores = np.choose(codes, [0.0, self.review_score, self.decline_score]).astype(np.float64)
        return codes, scores

    def reason(self, code: int) -> list[dict[str, Any]]:
        if code == DECLINE:
            return [{"rule": "amount", "at_least": self.decline_amount}]
        if code == REVIEW:
            return [{"rule": "amount", "at_least": self.review_amount}]
        return []
