"""``features rebuild`` against the real broker and Redis: an emptied store is rebuilt over the
horizon (labels included), a store behind its group only from its marks, and broker, topic
and group problems are one clear error."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.rebuild import behind, rebuild
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.replay import fraud_labels
from fraudstream.features.schema import encode_label
from tests.infra import FRAUDSTREAM, ROOT, free_port
from tests.serving import batch_of, tx_payload

pytestmark = pytest.mark.integration

BAD = [b"not json", b'{"transaction_id": "x"}', b"\xff\xfe"]


def _produce(bootstrap: str, topic: str, df: pd.DataFrame, bad: bool = True) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, row in enumerate(df.itertuples()):
        producer.produce(topic, key=str(row.customer_id).encode(), value=tx_payload(row))
        if bad and i % 200 == 0:
            producer.produce(topic, key=str(row.customer_id).encode(), value=BAD[i % 3])
    assert producer.flush(30) == 0


def _produce_labels(bootstrap: str, topic: str, df: pd.DataFrame) -> int:
    producer = Producer({"bootstrap.servers": bootstrap})
    feed = fraud_labels(df, FeatureConfig().delay_days)
    for label in feed.labels:
        producer.produce(topic, value=encode_label(label))
    producer.produce(topic, value=b"not a label")
    assert producer.flush(30) == 0
    return len(feed.labels)


def _commit_all(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Commit every partition's end for ``group`` (as serve would after deciding it all)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False
        )
    finally:
        consumer.close()
    return ends


def _conf(bootstrap: str) -> dict[str, str]:
    return {"bootstrap.servers": bootstrap}


def _assert_counters(store: RedisStore, df: pd.DataFrame, labelled: bool) -> None:
    """Customer and terminal counters (fraud counts too) equal one application of ``df``
    (and its labels), read through probe transactions after the data."""
    end = int(df["event_time_ms"].max()) + 1000
    later = end + FeatureConfig().delay_days * 86_400_000
    customers = sorted(df["customer_id"].astype(str).unique())
    terminals = sorted(df["terminal_id"].astype(str).unique())
    probes = pd.DataFrame(
        {
            "transaction_id": [f"probe-c-{c}" for c in customers]
            + [f"probe-t-{t}" for t in terminals],
            "customer_id": customers + [f"probe-{t}" for t in terminals],
            "terminal_id": ["probe"] * len(customers) + terminals,
            "event_time_ms": [end] * len(customers) + [later] * len(terminals),
            "amount": 0.0,
        }
    )
    reference = MemoryStore(FeatureConfig())
    if labelled:
        reference.apply_labels(fraud_labels(df, FeatureConfig().delay_days).labels)
    reference.apply(batch_of(df))
    expected = reference.apply(batch_of(probes))
    got = store.apply(batch_of(probes))
    n = len(customers)
    np.testing.assert_allclose(got[:n, 3:9], expected[:n, 3:9], rtol=1e-9, atol=0)
    np.testing.assert_allclose(got[n:, 9:], expected[n:, 9:], rtol=1e-9, atol=0)
    risks = [i for i, name in enumerate(FeatureConfig().feature_names) if "_risk_" in name]
    assert expected[n:, risks].any() == labelled  # fraud ratios seen only with labels


def test_an_emptied_store_is_rebuilt_over_the_horizon_with_its_labels(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topic_factory: Callable[..., str],
    history: pd.DataFrame,
) -> None:
    df = history.iloc[:2500]
    tx, labels = topic_factory("tx", 3), topic_factory("labels", 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_bootstrap, tx, df)
    n_labels = _produce_labels(kafka_bootstrap, labels, df)
    committed = _commit_all(kafka_bootstrap, group, tx, 3)
    store = RedisStore.from_url(redis_url, prefix=redis_prefix, socket_timeout_s=30)
    try:
        assert behind(store, committed, tx) == {p: (-1, c) for p, c in committed.items()}
        dry = rebuild(store, _conf(kafka_bootstrap), tx, group, labels, dry_run=True)
        assert store.applied_offsets(tx) == {}
        assert [(r.plan.start, r.plan.end) for r in dry.partitions] == [
            (0, committed[p]) for p in range(3)
        ]
        report = rebuild(store, _conf(kafka_bootstrap), tx, group, labels)
        assert sum(r.applied for r in report.partitions) == len(df)
        assert sum(r.skipped for r in report.partitions) == sum(
            1 for i in range(len(df)) if i % 200 == 0
        )
        assert (report.labels_applied, report.labels_skipped) == (n_labels, 1)
        assert store.applied_offsets(tx) == committed
        assert behind(store, committed, tx) == {}
        _assert_counters(store, df, labelled=True)
    finally:
        store.drop()
        store.close()


def test_a_store_behind_its_group_is_read_from_its_marks_only(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topic_factory: Callable[..., str],
    history: pd.DataFrame,
) -> None:
    df = history.iloc[:3000]
    tx = topic_factory("tx", 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_bootstrap, tx, df.iloc[:1500], bad=False)
    first = _commit_all(kafka_bootstrap, group, tx, 2)
    store = RedisStore.from_url(redis_url, prefix=redis_prefix, socket_timeout_s=30)
    try:
        rebuild(store, _conf(kafka_bootstrap), tx, group, None)  # records the rebuild
        _produce(kafka_bootstrap, tx, df.iloc[1500:], bad=False)
        second = _commit_all(kafka_bootstrap, group, tx, 2)
        assert behind(store, second, tx) == {p: (first[p], second[p]) for p in range(2)}
        report = rebuild(store, _conf(kafka_bootstrap), tx, group, None)
        assert [(r.plan.start, r.plan.end) for r in report.partitions] == [
            (first[p], second[p]) for p in range(2)
        ]
        assert sum(r.applied for r in report.partitions) == 1500
        _assert_counters(store, df, labelled=False)
        again = rebuild(store, _conf(kafka_bootstrap), tx, group, None)
        assert sum(r.applied for r in again.partitions) == 0
    finally:
        store.drop()
        store.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*FRAUDSTREAM, "features", "rebuild", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_command_reports_per_partition_and_names_each_problem(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topic_factory: Callable[..., str],
    history: pd.DataFrame,
) -> None:
    tx, labels = topic_factory("tx", 2), topic_factory("labels")
    group = f"g-{uuid.uuid4().hex[:8]}"
    _produce(kafka_bootstrap, tx, history.iloc[:400], bad=False)
    common = ["--redis-url", redis_url, "--redis-prefix", redis_prefix]
    common += ["--labels-topic", labels]
    ok = ["--bootstrap-servers", kafka_bootstrap, *common]

    unknown_group = _cli(*ok, "--input-topic", tx, "--group-id", group)
    assert unknown_group.returncode == 2
    assert f"group {group!r} has no committed offsets" in unknown_group.stderr

    committed = _commit_all(kafka_bootstrap, group, tx, 2)
    done = _cli(*ok, "--input-topic", tx, "--group-id", group)
    assert done.returncode == 0, done.stderr
    for p in range(2):
        assert f"partition {p}: from 0 to {committed[p]} ({committed[p]} records) applied" in (
            done.stdout
        )
    assert "labels: applied 0, skipped 0" in done.stdout

    missing = _cli(*ok, "--input-topic", f"nope-{group}", "--group-id", group)
    assert missing.returncode == 2
    assert f"topic 'nope-{group}' does not exist" in missing.stderr

    dead = f"127.0.0.1:{free_port()}"
    down = _cli("--bootstrap-servers", dead, *common, "--input-topic", tx, "--group-id", group)
    assert down.returncode == 2
    assert f"no Kafka broker answered at {dead}" in down.stderr

    no_redis = f"redis://127.0.0.1:{free_port()}/0"
    gone = _cli(*ok, "--redis-url", no_redis, "--input-topic", tx, "--group-id", group)
    assert gone.returncode == 2
    assert "feature store" in gone.stderr and "unavailable" in gone.stderr
    RedisStore.from_url(redis_url, prefix=redis_prefix).drop()
