"""The worker killed (SIGKILL) while labels are still being published, then restarted: every
label is in the store exactly once, and terminal features equal the offline computation;
Redis down: labels wait, uncommitted, and all arrive once it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.offline import compute_features
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.schema import Label, encode_label
from fraudstream.features.simulator import SimulatorConfig, simulate
from tests.integration.labels.harness import (
    LabelTopics,
    Message,
    Worker,
    count_labels,
    expected_labels,
    produce,
    store_labels,
    wait_for,
)
from tests.integration.labels.redis_server import RedisServer

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
COUNTS = [i for i, name in enumerate(FEATURE_NAMES) if "_nb_tx_" in name]
RATIOS = [i for i, name in enumerate(FEATURE_NAMES) if "_avg_" in name or "_risk_" in name]


def _batch(df: pd.DataFrame) -> TransactionBatch:
    return TransactionBatch.from_columns(
        df["transaction_id"].astype(str).tolist(),
        df["customer_id"].astype(str).tolist(),
        df["terminal_id"].astype(str).tolist(),
        df["event_time_ms"].to_numpy(),
        df["amount"].to_numpy(),
    )


def _labels(df: pd.DataFrame) -> list[Label]:
    return [
        Label(str(tx), str(c), str(t), int(ms), int(ms) + 7 * DAY_MS, bool(f))
        for tx, c, t, ms, f in df[
            ["transaction_id", "customer_id", "terminal_id", "event_time_ms", "is_fraud"]
        ].itertuples(index=False)
    ]


def _message(label: Label) -> Message:
    return label.transaction_id.encode(), encode_label(label), None


def _probes(df: pd.DataFrame) -> pd.DataFrame:
    """One transaction per terminal, 8 days after the last: its terminal windows hold it all."""
    terminals = sorted(df["terminal_id"].unique())
    at = int(df["event_time_ms"].max()) + 8 * DAY_MS
    return pd.DataFrame(
        {
            "transaction_id": [f"probe-{t}" for t in terminals],
            "event_time_ms": [at + i * 1000 for i in range(len(terminals))],
            "customer_id": [f"probe-customer-{t}" for t in terminals],
            "terminal_id": terminals,
            "amount": 1.0,
            "is_fraud": 0,
        }
    )


@pytest.mark.reliability  # issue 9, item 9: the label pipeline killed and restarted
def test_killed_mid_stream_every_label_is_applied_exactly_once(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    df = simulate(SimulatorConfig(n_customers=120, n_terminals=60, n_days=12, seed=7))
    labels = _labels(df)
    stream = labels + labels[::7]  # redeliveries of a seventh of them, later
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        store.apply(_batch(df))
        worker = start_worker(max_batch=20)
        chunks = [stream[i : i + 150] for i in range(0, len(stream), 150)]

        def publish() -> None:
            for chunk in chunks:
                produce(kafka_bootstrap, label_topics.labels, map(_message, chunk))
                time.sleep(0.05)

        producer = threading.Thread(target=publish)
        producer.start()
        wait_for(lambda: count_labels(redis_url, redis_prefix) >= 200, 60, "200 labels stored")
        worker.kill()
        killed_mid_stream = producer.is_alive()
        at_kill = count_labels(redis_url, redis_prefix)
        producer.join()
        assert killed_mid_stream and at_kill < len(labels), "the kill must come mid-stream"

        worker.start()
        wait_for(
            lambda: count_labels(redis_url, redis_prefix) == len(labels),
            60,
            f"all {len(labels)} labels stored after the restart",
            detail=lambda: (
                f"{count_labels(redis_url, redis_prefix)} stored ({at_kill} at the kill);"
                f" consumer: {worker.consumer()}; worker log and stacks: {worker.stacks()}"
            ),
        )
        time.sleep(1.0)  # anything still in flight would show up as an excess now
        triples = [(x.terminal_id, x.transaction_id, x.is_fraud) for x in stream]
        assert store_labels(redis_url, redis_prefix) == expected_labels(triples)
        probes = _probes(df)
        online = store.apply(_batch(probes))
    finally:
        store.drop()
        store.close()
    offline = compute_features(pd.concat([df, probes], ignore_index=True))[len(df) :]
    assert np.array_equal(online[:, COUNTS], offline[:, COUNTS])
    np.testing.assert_allclose(online[:, RATIOS], offline[:, RATIOS], rtol=1e-9, atol=0)
    assert (online[:, FEATURE_NAMES.index("terminal_risk_30d")] > 0).sum() >= 10


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def test_labels_wait_uncommitted_while_redis_is_down(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    group_id: str,
    redis_prefix: str,
    private_redis: RedisServer,
) -> None:
    t0 = 1_522_540_800_000
    labels = [
        Label(f"tx{i}", f"c{i % 9}", f"T{i % 13}", t0 + i * 1000, t0 + DAY_MS, i % 3 == 0)
        for i in range(300)
    ]
    worker = start_worker(redis=private_redis.url, retry_max_s=0.5)
    private_redis.kill()
    produce(kafka_bootstrap, label_topics.labels, map(_message, labels))
    wait_for(lambda: worker.metric("fraudstream_labels_store_retries_total") >= 5, 60, "retries")
    time.sleep(3.5)  # past faust's commit interval (2.8 s): nothing may be committed
    assert _committed(kafka_bootstrap, group_id, label_topics.labels, 2) == 0
    assert worker.metric("fraudstream_labels_received_total") == 0

    private_redis.start()  # empty: everything must be written again from Kafka
    wait_for(lambda: count_labels(private_redis.url, redis_prefix) == len(labels), 60, "all labels")
    triples = [(x.terminal_id, x.transaction_id, x.is_fraud) for x in labels]
    assert store_labels(private_redis.url, redis_prefix) == expected_labels(triples)
    received = lambda: worker.metric("fraudstream_labels_received_total") == len(labels)  # noqa: E731
    wait_for(received, 30, "the batches counted once stored and forwarded")
    wait_for(
        lambda: _committed(kafka_bootstrap, group_id, label_topics.labels, 2) == len(labels),
        30,
        "the offsets committed once the labels are stored",
    )
