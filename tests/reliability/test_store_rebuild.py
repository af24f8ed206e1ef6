"""Redis loses everything under a running serve (SIGKILL, restarted empty, no persistence):
serve degrades and goes on, and the store is restored to one application of the input, with
no decision missing: by serve itself (it notices the emptied store when Redis answers again
and rebuilds in the background) or by an operator running ``fraudstream features rebuild``."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from fraudstream.features.customer_log import replay
from fraudstream.features.local_store import LocalStore
from fraudstream.features.redis_store import RedisStore
from fraudstream.models.registry import Registry
from tests.infra import FRAUDSTREAM, ROOT, LocalRedis
from tests.serving import (
    ServeFactory,
    ServeHandle,
    assert_store_equals_one_application,
    consume_all,
    decisions_of,
    produce,
    topic_end_offsets,
    tx_payload,
)

pytestmark = pytest.mark.reliability

PARTITIONS = 3


def _committed(bootstrap: str, group: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return [tp.offset for tp in consumer.committed(tps, timeout=10)]
    finally:
        consumer.close()


def _wait(check: object, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _stored_transactions(url: str, prefix: str, customer_state: str = "redis") -> int:
    """Transactions the store knows: one field per transaction id in each customer's rows
    hashes, one per week (see ``fraudstream.features.redis_scripts``), or, with customer
    state held locally, the answers each customer's log holds."""
    client = redis.Redis.from_url(url)
    try:
        if customer_state == "local":
            rules = LocalStore(RedisStore.from_url(url, prefix=prefix))._rules
            logs = [client.get(k) for k in client.scan_iter(match=f"{prefix}:{{c:*}}:log")]
            return sum(len(ids) for raw in logs for ids in replay(raw, rules).rows.values())
        keys = list(client.scan_iter(match=f"{prefix}:{{c:*}}:r*"))
        return sum(int(client.hlen(k)) for k in keys)
    finally:
        client.close()


def _pending(serve: ServeHandle) -> float:
    found = re.search(r"^fraudstream_store_pending ([0-9.e+]+)$", serve.metrics(), re.M)
    return float(found.group(1)) if found else -1.0


def _rebuilds_done(serve: ServeHandle) -> float:
    found = re.search(
        r'^fraudstream_store_rebuilds_total\{outcome="done"\} ([0-9.e+]+)$', serve.metrics(), re.M
    )
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize(
    ("rebuilder", "customer_state"),
    [("serve", "redis"), ("command", "redis"), ("serve", "local"), ("command", "local")],
)
def test_a_store_emptied_under_a_running_serve_is_rebuilt(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    rebuilder: str,
    customer_state: str,
) -> None:
    df = history.iloc[:3000]
    items = [(str(r.customer_id).encode(), tx_payload(r)) for r in df.itertuples()]
    private = LocalRedis(var=tmp_path / "redis")
    private.start()
    try:
        extra = ["--budget-ms", "60000", "--max-batch", "64"]
        extra += ["--labels-topic", topic_factory("labels"), "--customer-state", customer_state]
        if rebuilder == "command":  # only the operator's command rebuilds
            extra.append("--no-store-rebuild")
        serve = serve_factory(registry.root, PARTITIONS, extra=extra, redis=private.url)
        group = serve.args[serve.args.index("--group-id") + 1]
        produce(kafka_bootstrap, serve.input, items[:1500])
        _wait(
            lambda: len(consume_all(kafka_bootstrap, serve.decisions, 1500, 2, 0)) >= 1500,
            "the first 1500 decisions",
        )
        private.kill()
        produce(kafka_bootstrap, serve.input, items[1500:2000])
        private.start()  # same port, empty: no persistence
        produce(kafka_bootstrap, serve.input, items[2000:])
        out = decisions_of(consume_all(kafka_bootstrap, serve.decisions, len(df), settle_s=2))
        assert {d["transaction_id"] for d in out} == set(df["transaction_id"].astype(str))
        assert any(d["degraded"] for d in out), "serve never noticed the outage"
        _wait(lambda: _pending(serve) == 0, "serve to apply its pending transactions")
        # an idle serve commits its last batch too: the rebuild covers the whole input
        ends = topic_end_offsets(kafka_bootstrap, serve.input, PARTITIONS)
        _wait(lambda: _committed(kafka_bootstrap, group, serve.input) == ends, "commits")
        committed = _committed(kafka_bootstrap, group, serve.input)
        if rebuilder == "serve":
            _wait(lambda: _rebuilds_done(serve) >= 1, "serve's own rebuild")
            assert "the feature store lost its data" in serve.log_text()
            stored = _stored_transactions(private.url, serve.prefix, customer_state)
            assert stored == len(df)
            assert_store_equals_one_application(private.url, serve.prefix, df, customer_state)
            return
        lost = len(df) - _stored_transactions(private.url, serve.prefix, customer_state)
        assert lost >= 1500, f"the restart should have lost the first 1500, lost {lost}"
        assert _rebuilds_done(serve) == 0

        cmd = [*FRAUDSTREAM, "features", "rebuild"]
        cmd += ["--bootstrap-servers", kafka_bootstrap, "--redis-url", private.url]
        cmd += ["--redis-prefix", serve.prefix, "--input-topic", serve.input]
        cmd += ["--group-id", group, "--no-labels", "--customer-state", customer_state]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        for p in range(PARTITIONS):
            line = f"partition {p}: from 0 to {committed[p]} ({committed[p]} records) applied"
            assert line in done.stdout, done.stdout
        assert serve.proc.poll() is None, "serve must run through the rebuild"

        assert _stored_transactions(private.url, serve.prefix, customer_state) == len(df)
        assert_store_equals_one_application(private.url, serve.prefix, df, customer_state)
    finally:
        serve_factory.stop_all()
        private.stop()


def test_a_store_emptied_while_serve_was_down_is_rebuilt_at_start(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: Callable[..., str],
) -> None:
    df = history.iloc[:1200]
    items = [(str(r.customer_id).encode(), tx_payload(r)) for r in df.itertuples()]
    extra = ["--budget-ms", "60000", "--labels-topic", topic_factory("labels")]
    serve = serve_factory(registry.root, PARTITIONS, extra=extra)
    group = serve.args[serve.args.index("--group-id") + 1]
    produce(kafka_bootstrap, serve.input, items[:800])
    assert len(consume_all(kafka_bootstrap, serve.decisions, 800)) == 800
    ends = topic_end_offsets(kafka_bootstrap, serve.input, PARTITIONS)
    _wait(lambda: _committed(kafka_bootstrap, group, serve.input) == ends, "commits")
    assert serve.stop() == 0
    wiped = RedisStore.from_url(redis_url, prefix=serve.prefix)
    assert wiped.drop() > 0  # as if Redis had restarted empty while no serve ran
    wiped.close()

    again = serve_factory(registry.root, PARTITIONS, extra=extra)
    produce(kafka_bootstrap, again.input, items[800:])
    _wait(lambda: _rebuilds_done(again) >= 1, "the rebuild at assignment")
    assert "the feature store is behind the committed offsets" in again.log_text()
    assert len(consume_all(kafka_bootstrap, again.decisions, len(df))) >= len(df)
    _wait(lambda: _stored_transactions(redis_url, again.prefix) == len(df), "every transaction")
    assert_store_equals_one_application(redis_url, again.prefix, df)
