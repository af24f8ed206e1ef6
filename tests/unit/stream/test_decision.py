"""Decision records and the rule fallback."""

from __future__ import annotations

import numpy as np
import orjson

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.contracts import schema_errors
from fraudstream.stream.decision import APPROVE, DECLINE, REVIEW, Decision, Rules
from fraudstream.stream.pipeline import ScoredBatch


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
        "flags",
    }
    assert doc["degraded"] is None and doc["latency_ms"] == {"total": 3.0}
    assert doc["flags"] == []


def _scored() -> ScoredBatch:
    batch = TransactionBatch.from_columns(
        ["t1", "t2", "t3"],
        ["c1", "c2", "c3"],
        ["k1", "k2", "k3"],
        np.array([1_700_000_000_000, 1_700_000_001_000, 1_700_000_002_000]),
        np.array([10.0, 250.0, 9000.0]),
    )
    reasons = {2: [{"feature": "tx_amount", "contribution": 1.5}]}
    return ScoredBatch(
        batch,
        np.zeros((3, 15), dtype=np.float32),
        np.array([0.1, 0.3, 0.9]),
        np.array([APPROVE, REVIEW, DECLINE], dtype=np.int8),
        reasons,
        None,
        "v0001",
        {"features": 1.5, "score": 0.5},
    )


def test_rows_are_the_decision_contract_column_by_column() -> None:
    t = 1_700_000_100_000
    arrival = np.array([t, t + 10, t + 60], dtype=np.int64)
    queue = np.array([4.0, 3.0, 0.0])
    rows, total = _scored().rows(arrival, 50.0, t + 70, {"decode": 0.2}, queue)
    assert total.tolist() == [70.0, 60.0, 10.0]
    assert [list(r) for r in rows] == [list(Decision.__slots__)] * 3
    assert [r["deadline_met"] for r in rows] == [False, False, True]
    assert [r["decision"] for r in rows] == ["approve", "review", "decline"]
    assert [r["reasons"] for r in rows] == [[], [], [{"feature": "tx_amount", "contribution": 1.5}]]
    assert rows[1]["latency_ms"] == {
        "total": 60.0,
        "decode": 0.2,
        "features": 1.5,
        "score": 0.5,
        "queue": 3.0,
    }
    assert rows[0]["amount"] == 10.0 and rows[2]["event_time"] == 1_700_000_002_000
    for row in rows:
        assert schema_errors("decision", orjson.loads(orjson.dumps(row))) == []


def test_decisions_without_a_budget_all_meet_it() -> None:
    decisions = _scored().decisions(None, None, 0)
    assert [d.deadline_met for d in decisions] == [True] * 3
    assert [d.latency_ms["total"] for d in decisions] == [0.0] * 3
    assert decisions[2].reasons == [{"feature": "tx_amount", "contribution": 1.5}]


def test_store_flags_become_named_flags_on_the_flagged_rows_only() -> None:
    scored = _scored()
    scored.flags = np.array([0, 1 | 2, 4], dtype=np.int64)
    rows, _ = scored.rows(None, None, 1_700_000_003_000)
    assert [r["flags"] for r in rows] == [
        [],
        ["conflicting_duplicate", "event_time_outlier"],
        ["history_capped"],
    ]
