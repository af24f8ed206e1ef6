"""Live KPIs after a known replay of decisions and labels (labels before and after their
decisions, repeats, unusable decisions) equal a direct computation; after a SIGKILL the
worker recovers them from the changelog and keeps joining labels to earlier decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from fraudstream.features.schema import Label, encode_label
from tests.integration.labels.harness import LabelTopics, Message, Worker, produce, wait_for

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z
HOUR_MS = 3_600_000
OUTCOMES = ("approve", "review", "decline")


def _replay(seed: int = 3, n: int = 600) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decisions for ``n`` transactions over five hours, and labels: for about 40% of them
    plus some for transactions never decided."""
    rng = np.random.default_rng(seed)
    decisions = pd.DataFrame(
        {
            "transaction_id": [f"k{i}" for i in range(n)],
            "customer_id": [f"c{c}" for c in rng.integers(0, 50, n)],
            "terminal_id": [f"t{c}" for c in rng.integers(0, 20, n)],
            "event_time": T0 + rng.integers(0, 5 * HOUR_MS, n),
            "amount": np.round(rng.gamma(2.0, 40.0, n), 2),
            "decision": rng.choice(OUTCOMES, n, p=[0.7, 0.2, 0.1]),
        }
    )
    picked = decisions.sample(frac=0.4, random_state=seed)
    fraud_p = picked["decision"].map({"approve": 0.2, "review": 0.5, "decline": 0.8})
    ghosts = pd.DataFrame(
        {
            "transaction_id": [f"ghost{i}" for i in range(12)],
            "customer_id": "cg",
            "terminal_id": "tg",
            "event_time": T0 + rng.integers(0, 5 * HOUR_MS, 12),
        }
    )
    labels = pd.concat(
        [
            picked[["transaction_id", "customer_id", "terminal_id", "event_time"]].assign(
                is_fraud=rng.random(len(picked)) < fraud_p.to_numpy()
            ),
            ghosts.assign(is_fraud=rng.random(12) < 0.5),
        ],
        ignore_index=True,
    )
    return decisions, labels.sample(frac=1.0, random_state=seed, ignore_index=True)


def _expected(decisions: pd.DataFrame, labels: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The KPIs per hour computed directly from the two tables (first of each id wins)."""
    d = decisions.drop_duplicates("transaction_id")
    lab = labels.drop_duplicates("transaction_id")
    tx = pd.merge(
        d[["transaction_id", "event_time", "amount", "decision"]],
        lab[["transaction_id", "event_time", "is_fraud"]],
        on="transaction_id",
        how="outer",
        suffixes=("", "_label"),
    )
    tx["event_time"] = tx["event_time"].fillna(tx["event_time_label"]).astype(np.int64)
    tx["hour"] = tx["event_time"] // HOUR_MS * HOUR_MS
    tx["fraud"] = tx["is_fraud"].fillna(False).astype(bool)
    out: dict[str, dict[str, Any]] = {}
    for hour, g in tx.groupby("hour"):
        counts = {o: int((g["decision"] == o).sum()) for o in OUTCOMES}
        frauds = {o: int(((g["decision"] == o) & g["fraud"]).sum()) for o in OUTCOMES}
        amount = {
            o: float(g.loc[(g["decision"] == o) & g["fraud"], "amount"].sum()) for o in OUTCOMES
        }
        out[pd.Timestamp(hour, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:00:00Z")] = {
            "decisions": counts,
            "labels": int(g["is_fraud"].notna().sum()),
            "confirmed_frauds": int(g["fraud"].sum()),
            "undecided": int((g["decision"].isna() & g["fraud"]).sum()),
            "frauds": frauds,
            "precision": {
                o: (frauds[o] / counts[o] if counts[o] else None) for o in ("review", "decline")
            },
            "caught": amount["review"] + amount["decline"],
            "missed": amount["approve"],
        }
    return out


def _observed(hours: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for h in hours:
        by = h["confirmed_frauds_by_decision"]
        out[h["hour"]] = {
            "decisions": h["decisions"],
            "labels": h["labels"],
            "confirmed_frauds": h["confirmed_frauds"],
            "undecided": by["undecided"],
            "frauds": {o: by[o] for o in OUTCOMES},
            "precision": h["precision"],
            "caught": h["fraud_amount"]["caught"],
            "missed": h["fraud_amount"]["missed"],
        }
    return out


def _matches(worker: Worker, expected: dict[str, dict[str, Any]]) -> bool:
    observed = _observed(worker.kpis())
    if observed.keys() != expected.keys():
        return False
    return all(_flat(observed[h]) == _flat(expected[h]) for h in expected)


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested KPIs as one level; amounts and ratios rounded far below their sums' error."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = round(value, 9) if isinstance(value, float) else value
    return out


def _decision_messages(decisions: pd.DataFrame) -> list[Message]:
    return [
        (row["customer_id"].encode(), orjson.dumps({**row, "score": 0.5}), None)
        for row in decisions.to_dict("records")
    ]


def _label_messages(labels: pd.DataFrame) -> list[Message]:
    return [
        (
            row["transaction_id"].encode(),
            encode_label(
                Label(
                    row["transaction_id"], row["customer_id"], row["terminal_id"],
                    int(row["event_time"]), int(row["event_time"]) + 7 * 86_400_000,
                    bool(row["is_fraud"]),
                )
            ),
            None,
        )
        for row in labels.to_dict("records")
    ]  # fmt: skip


def test_kpis_after_a_known_replay_equal_a_direct_computation(
    start_worker: Callable[..., Worker], label_topics: LabelTopics, kafka_bootstrap: str
) -> None:
    decisions, labels = _replay()
    early, rest = labels.iloc[:60], labels.iloc[60:]
    before, after = rest.iloc[: len(rest) - 50], rest.iloc[len(rest) - 50 :]
    worker = start_worker(kpi_partitions=3)
    produce(kafka_bootstrap, label_topics.labels, _label_messages(early))  # before decisions
    wait_for(lambda: worker.metric("fraudstream_labels_received_total") == 60, 60, "early labels")
    unusable: list[Message] = [(b"c", b"garbage", None), (b"c", b'{"decision": "x"}', None)]
    produce(
        kafka_bootstrap,
        label_topics.decisions,
        _decision_messages(decisions) + unusable + _decision_messages(decisions.iloc[::20]),
    )
    produce(kafka_bootstrap, label_topics.labels, _label_messages(before))
    produce(kafka_bootstrap, label_topics.labels, _label_messages(early.iloc[::3]))  # repeats
    seen = pd.concat([early, before])
    expected = _expected(decisions, seen)
    assert sum(h["undecided"] for h in expected.values()) > 0
    assert all(sum(h["frauds"].values()) > 0 for h in expected.values())
    wait_for(lambda: _matches(worker, expected), 60, "KPIs equal to the direct computation")
    assert worker.metric("fraudstream_kpi_decisions_skipped_total") == 2

    hour = next(iter(expected))
    e = expected[hour]
    assert (
        worker.metric("fraudstream_kpi_decisions", hour=hour, decision="review")
        == (e["decisions"]["review"])
    )
    assert worker.metric("fraudstream_kpi_confirmed_frauds", hour=hour) == e["confirmed_frauds"]
    assert worker.metric("fraudstream_kpi_precision", hour=hour, decision="decline") == (
        pytest.approx(e["precision"]["decline"])
    )
    assert worker.metric("fraudstream_kpi_fraud_amount", hour=hour, outcome="missed") == (
        pytest.approx(e["missed"])
    )

    worker.kill()
    worker.start()
    wait_for(lambda: _matches(worker, expected), 60, "KPIs recovered after SIGKILL")
    produce(kafka_bootstrap, label_topics.labels, _label_messages(after))
    final = _expected(decisions, labels)
    wait_for(lambda: _matches(worker, final), 60, "late labels joined to recovered decisions")
