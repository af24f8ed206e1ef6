"""Decision records and the rule fallback."""

from __future__ import annotations

import numpy as np
import orjson

from stream.decision import APPROVE, DECLINE, REVIEW, Decision, Rules


def test_rules_decide_by_amount_thresholds() -> None:
    rules = Rules(review_amount=220, decline_amount=5000)
    codes, scores = rules.decide(np.array([0.0, 219.99, 220.0, 4999.0, 5000.0]))
    assert codes.tolist() == [APPROVE, APPROVE, REVIEW, REVIEW, DECLINE]
    assert scores.tolist() == [0.0, 0.0, 0.5, 0.5, 0.95]
    assert rules.reason(DECLINE) == [{"rule": "amount", "at_least": 5000}]
    assert rules.reason(APPROVE) == []


def test_decision_json_has_every_contract_field() -> None:
    d = Decision(
        "t1",
        "c1",
        "k1",
        12.5,
        1_700_000_000_000,
        0.25,
        "approve",
        "v0001",
        [],
        {"total": 3.0},
        50.0,
        True,
        None,
        1_700_000_000_003,
    )
    doc = orjson.loads(d.to_json())
    assert set(doc) == {
        "transaction_id",
        "customer_id",
        "terminal_id",
        "amount",
        "event_time",
        "score",
        "decision",
        "model_version",
        "reasons",
        "latency_ms",
        "budget_ms",
        "deadline_met",
        "degraded",
        "scored_at",
    }
    assert doc["degraded"] is None and doc["latency_ms"] == {"total": 3.0}
