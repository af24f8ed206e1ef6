"""The shadow challenger: scored on the champion's batches when slack allows, never in its way."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from fraudstream.stream.delivery import Delivery
from fraudstream.stream.pipeline import ScoredBatch, ScorerLike

logger = logging.getLogger(__name__)


@dataclass
class Shadow:
    """Scores a challenger on the exact feature rows the champion saw."""

    scorer: ScorerLike
    """The challenger model."""
    topic: str
    """Where its scores go (``fraud.shadow``)."""
    scored: int = 0
    """Records scored so far."""

    def score(self, batch: ScoredBatch, delivery: Delivery, now_ms: int) -> None:
        if batch.model_version is None:
            return  # the rules rung has no model score to compare with
        scores = self.scorer.score(batch.features)
        codes = self.scorer.decide(scores)
        b = batch.batch
        for i in range(len(b)):
            doc = {
                "transaction_id": b.transaction_id[i],
                "champion_version": batch.model_version,
                "champion_score": float(batch.scores[i]),
                "champion_decision": int(batch.codes[i]),
                "challenger_version": self.scorer.version,
                "challenger_score": float(scores[i]),
                "challenger_decision": int(codes[i]),
                "degraded": batch.rung,
                "scored_at": now_ms,
            }
            delivery.produce(self.topic, b.customer_id[i].encode(), orjson.dumps(doc))
        self.scored += len(b)
