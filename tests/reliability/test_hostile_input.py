"""Hostile input through a real serve, broker and Redis (issue 24, findings 2 to 4): a
transaction id reused with other content, a record dated years ahead of its stream, and a
hot customer; each decided, flagged where it should be, and none poisoning the store."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pandas as pd
import pytest
import redis

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.models.registry import Registry
from tests.serving import (
    ServeFactory,
    assert_store_equals_one_application,
    consume_all,
    decisions_of,
    produce,
    tx_payload,
)

pytestmark = pytest.mark.reliability

DAY_MS = 86_400_000


def _items(df: pd.DataFrame) -> list[tuple[bytes | None, bytes | None]]:
    return [(str(r.customer_id).encode(), tx_payload(r)) for r in df.itertuples()]


def _decide(
    serve_factory: ServeFactory, registry: Registry, bootstrap: str, df: pd.DataFrame
) -> tuple[list[dict], str]:  # type: ignore[type-arg]
    serve = serve_factory(registry.root, extra=["--budget-ms", "60000"])
    produce(bootstrap, serve.input, _items(df))
    out = decisions_of(consume_all(bootstrap, serve.decisions, len(df), settle_s=2))
    assert len(out) == len(df), serve.log_text()
    assert serve.proc.poll() is None
    return out, serve.prefix


def test_a_reused_id_with_other_content_is_decided_on_its_own_and_changes_nothing(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    df = history.iloc[:300].reset_index(drop=True)
    first = df.iloc[[120]].assign(amount=10.0)
    reused = first.assign(amount=5_000.0)  # same id, customer, terminal and time
    moved = first.assign(customer_id="someone-else", event_time_ms=first.event_time_ms + DAY_MS)
    stream = pd.concat([df.iloc[:120], first, df.iloc[121:200], reused, moved, df.iloc[200:]])
    out, prefix = _decide(serve_factory, registry, kafka_bootstrap, stream.reset_index(drop=True))
    tid = str(first.transaction_id.iloc[0])
    copies = [d for d in out if d["transaction_id"] == tid]
    assert [d["amount"] for d in copies] == [10.0, 5_000.0, 10.0]
    assert copies[0]["flags"] == []
    assert copies[1]["flags"] == ["conflicting_duplicate"] == copies[2]["flags"]
    assert copies[1]["customer_id"] == copies[0]["customer_id"]
    assert copies[2]["customer_id"] == "someone-else"
    # decided on its own content, as if applied next to the first copy (read-only)
    alone = _last_score(registry, pd.concat([df.iloc[:120], first, reused]))
    assert copies[1]["score"] == pytest.approx(alone, abs=1e-6)
    assert copies[1]["score"] != pytest.approx(copies[0]["score"])
    # and the store holds the history as if only the first copy had come
    assert_store_equals_one_application(
        redis_url, prefix, pd.concat([df.iloc[:120], first, df.iloc[121:]])
    )


def _last_score(registry: Registry, table: pd.DataFrame) -> float:
    """The score of the table's last row, features computed offline over the table."""
    from fraudstream.models.scorer import Scorer

    x = compute_features(table.assign(is_fraud=0), FeatureConfig()).astype(np.float32)[-1:]
    return float(Scorer.load(registry, device="cpu").score(x)[0])


def test_a_record_dated_years_ahead_hides_no_history_and_is_flagged(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    df = history.iloc[:2000].reset_index(drop=True)
    busiest = df["customer_id"].value_counts().index[0]
    at = int(np.flatnonzero(df["customer_id"].to_numpy() == busiest)[5])
    future = df.iloc[[at]].assign(
        transaction_id="from-the-future",
        event_time_ms=int(time.time() * 1000),  # today, inside a 2018 stream
    )
    earlier = df.iloc[: at - 5]  # redelivered afterwards: must change nothing
    stream = pd.concat([df.iloc[:at], future, df.iloc[at:], earlier]).reset_index(drop=True)
    out, prefix = _decide(serve_factory, registry, kafka_bootstrap, stream)
    by_id: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for d in out:
        by_id.setdefault(d["transaction_id"], []).append(d)
    assert by_id["from-the-future"][0]["flags"] == ["event_time_outlier"]
    # the customer's later transactions see their whole history (as offline without it)
    offline = compute_features(df.assign(is_fraud=0), FeatureConfig())
    scorer_scores = _scores(registry, offline)
    for i in np.flatnonzero(df["customer_id"].to_numpy() == busiest):
        d = by_id[str(df.transaction_id.iloc[i])][0]
        assert d["score"] == pytest.approx(scorer_scores[i], abs=1e-6), i
        assert d["flags"] == []
    # redelivered transactions got their first decision again
    for tid in earlier["transaction_id"].astype(str):
        first, again = by_id[tid]
        assert again["score"] == first["score"]
    assert_store_equals_one_application(redis_url, prefix, pd.concat([df, future]))


def _scores(registry: Registry, x: np.ndarray) -> np.ndarray:
    from fraudstream.models.scorer import Scorer

    return np.asarray(Scorer.load(registry, device="cpu").score(x.astype(np.float32)))


def test_a_hot_customer_never_holds_redis_for_long(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    """12,000 transactions of one customer on one terminal, a minute apart: decided, equal
    to offline (under the history cap, nothing flagged), and no script call in Redis's
    slow log over 100 ms (a loose bound for a shared VM; ops/bench/features_bench.py
    measures the cost per transaction)."""
    n = 12_000
    start = int(history["event_time_ms"].min())
    df = pd.DataFrame(
        {
            "transaction_id": [f"hot-{i}" for i in range(n)],
            "customer_id": "guest",
            "terminal_id": "big-merchant",
            "event_time_ms": start + 60_000 * np.arange(n),
            "amount": np.round(np.random.default_rng(3).gamma(2.0, 30.0, n), 2),
        }
    )
    client = redis.Redis.from_url(redis_url)
    client.config_set("slowlog-log-slower-than", 100_000)
    client.slowlog_reset()
    out, _prefix = _decide(serve_factory, registry, kafka_bootstrap, df)
    slow = [e for e in client.slowlog_get(128) if b"EVAL" in b" ".join(e["command"].split()[:1])]
    client.config_set("slowlog-log-slower-than", 10_000)
    client.close()
    assert slow == [], [(e["duration"], e["command"][:80]) for e in slow]
    got = {d["transaction_id"]: d for d in out}
    want = _scores(registry, compute_features(df.assign(is_fraud=0), FeatureConfig()))
    scores = np.array([got[t]["score"] for t in df["transaction_id"]])
    np.testing.assert_allclose(scores, want, atol=1e-6)
    assert all(not got[t]["flags"] for t in df["transaction_id"])
    assert orjson.dumps(out[0])  # decisions stay serialisable


def test_the_valid_but_unusual_corpus_is_decided_with_its_flags(
    serve_factory: ServeFactory, registry: Registry, kafka_bootstrap: str
) -> None:
    """poison.decided_corpus() after 30 ordinary records of its stream's time: every record
    decided (none dead-lettered), each with the flags the store gives it."""
    from fraudstream.features.store import FLAG_CONFLICT, FLAG_OUTLIER
    from tests.reliability.poison import GOOD, decided_corpus

    names = {0: [], FLAG_CONFLICT: ["conflicting_duplicate"], FLAG_OUTLIER: ["event_time_outlier"]}
    lead = [
        (b"c", orjson.dumps({**GOOD, "transaction_id": f"lead-{i}", "terminal_id": f"t{i}"}))
        for i in range(30)
    ]
    corpus = decided_corpus()
    items: list[tuple[bytes | None, bytes | None]] = [*lead, *((k, v) for k, v, _ in corpus)]
    serve = serve_factory(registry.root, extra=["--budget-ms", "60000"])
    produce(kafka_bootstrap, serve.input, items)
    out = decisions_of(consume_all(kafka_bootstrap, serve.decisions, len(items), settle_s=2))
    assert len(out) == len(items), serve.log_text()
    assert consume_all(kafka_bootstrap, serve.dlq, 1, timeout_s=3, settle_s=0) == []
    got = [d["flags"] for d in out[len(lead) :]]
    assert got == [names[flags] for _, _, flags in corpus]
    assert out[len(lead)]["score"] == out[len(lead) + 3]["score"]  # the redelivered first copy
