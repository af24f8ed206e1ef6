"""fraudstream backtest on the online path: the Redis store, and a running serve via Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from fraudstream.features.datafile import write_transactions
from fraudstream.models.registry import Registry
from tests.integration.history.cli_run import fraudstream
from tests.serving import ServeFactory, consume_all, decisions_of

pytestmark = pytest.mark.integration

WINDOW = ["--test-start", "2018-04-15", "--test-days", "6"]


def _backtest(
    data: Path, registry: Registry, report: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> int:
    argv = ["backtest", "--data", str(data), "--registry", str(registry.root), *WINDOW]
    argv += ["--report", str(report), "--device", "cpu", *extra]
    return fraudstream(argv)


def _keys(redis_url: str, pattern: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def test_redis_store_gives_the_memory_store_scores(
    history: pd.DataFrame,
    registry: Registry,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = write_transactions(history, tmp_path / "history.parquet")
    before = _keys(redis_url, "backtest-*")
    assert _backtest(data, registry, tmp_path / "memory", monkeypatch) == 0
    argv = ["--store", "redis", "--redis-url", redis_url]
    assert _backtest(data, registry, tmp_path / "redis", monkeypatch, *argv) == 0
    memory = pd.read_parquet(tmp_path / "memory" / "predictions.parquet")
    online = pd.read_parquet(tmp_path / "redis" / "predictions.parquet")
    assert len(memory) > 1000
    pd.testing.assert_frame_equal(online, memory, check_exact=True)
    doc = json.loads((tmp_path / "redis" / "metrics.json").read_text())
    assert doc["run"]["store"] == "redis"
    assert _keys(redis_url, "backtest-*") == before  # the run's own prefix is dropped


@pytest.mark.parametrize("customer_state", ["redis", "local"])
def test_via_kafka_scores_equal_the_memory_backtest(
    history: pd.DataFrame,
    registry: Registry,
    serve_factory: ServeFactory,
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    customer_state: str,
) -> None:
    """Delay 3 days against the feature delay of 7: the test window goes to serve in two
    phases, with the labels that become due in the second fed between them. Serve with
    either customer state, the backtest priming its store of the same kind."""
    data = write_transactions(history, tmp_path / "history.parquet")
    state = ["--customer-state", customer_state]
    serve = serve_factory(registry.root, extra=["--budget-ms", "60000", *state])
    common = ["--delay-days", "3"]
    assert _backtest(data, registry, tmp_path / "memory", monkeypatch, *common) == 0
    live = [
        *common,
        "--via-kafka",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--input-topic",
        serve.input,
        "--decisions-topic",
        serve.decisions,
        "--redis-url",
        redis_url,
        "--redis-prefix",
        serve.prefix,
        "--decisions-timeout-s",
        "120",
        *state,
    ]
    assert _backtest(data, registry, tmp_path / "live", monkeypatch, *live) == 0, serve.log_text()
    doc = json.loads((tmp_path / "live" / "metrics.json").read_text())["live"]
    ms = history["event_time_ms"].to_numpy()
    start = pd.Timestamp("2018-04-15", tz="UTC").value // 1_000_000
    window = history.loc[(ms >= start) & (ms < start + 6 * 86_400_000), "transaction_id"]
    assert doc["sent"] == doc["received"] == len(window)
    assert doc["scores_equal_backtest"] is True and doc["mismatched_full_path"] == 0
    assert doc["compared_full_path"] == len(window)
    assert doc["degraded"] == {"full": len(window)} and doc["duplicates"] == 0
    assert set(doc["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert (tmp_path / "live" / "latency.png").stat().st_size > 10_000
    # independently of the backtest's own comparison: read serve's decisions back
    decided = decisions_of(consume_all(kafka_bootstrap, serve.decisions, len(window)))
    assert sorted(d["transaction_id"] for d in decided) == sorted(window.astype(str))
    memory = pd.read_parquet(tmp_path / "memory" / "predictions.parquet")
    by_id = {d["transaction_id"]: d for d in decided}
    live_scores = np.array([by_id[t]["score"] for t in memory["transaction_id"]])
    np.testing.assert_array_equal(live_scores, memory["score"].to_numpy())
    assert [by_id[t]["decision"] for t in memory["transaction_id"]] == memory["decision"].tolist()
    live_metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert live_metrics["live"]["metrics"] == live_metrics["models"]["champion"]["metrics"]
