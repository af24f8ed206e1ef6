"""Labels compressed with every codec Kafka supports (gzip, snappy, lz4, zstd) all reach the
store through the worker, and its freshness gauges say, per partition, when and up to which
label time."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from fraudstream.features.schema import Label, encode_label
from tests.integration.labels.harness import (
    LabelTopics,
    Worker,
    expected_labels,
    store_labels,
    wait_for,
)

pytestmark = pytest.mark.integration

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 120
T0 = 1_522_540_800_000
DAY_MS = 86_400_000


def _labels(codec: str, first: int) -> list[Label]:
    """Distinct ids per codec; label times distinct across the whole test."""
    return [
        Label(
            f"{codec}-{i}", f"c{i % 13}", f"T{i % 7}", T0 + i * 1000,
            T0 + 7 * DAY_MS + (first + i) * 1000, i % 3 == 0,
        )
        for i in range(PER_CODEC)
    ]  # fmt: skip


def _produce(bootstrap: str, topic: str, codec: str, labels: list[Label]) -> None:
    """One producer per codec, batching (linger) so that batches hold many labels: librdkafka
    sends a batch uncompressed when compressing would not make it smaller."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "compression.type": codec,
            "linger.ms": 50,
        }
    )
    for i, label in enumerate(labels):
        key = label.transaction_id.encode()
        producer.produce(topic, key=key, value=encode_label(label), partition=i % 2)
    assert producer.flush(30) == 0


def test_labels_of_every_codec_reach_the_store_and_show_in_freshness(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    worker = start_worker()
    started = time.time()
    sent: list[Label] = []
    for n, codec in enumerate(CODECS):
        labels = _labels(codec, n * PER_CODEC)
        _produce(kafka_bootstrap, label_topics.labels, codec, labels)
        sent += labels
    total = len(CODECS) * PER_CODEC

    def received() -> bool:
        return worker.metric("fraudstream_labels_received_total") == total

    wait_for(received, 60, f"{total} labels read", detail=worker.tail)
    assert worker.metric("fraudstream_labels_applied_total") == total
    triples = [(x.terminal_id, x.transaction_id, x.is_fraud) for x in sent]
    stored = store_labels(redis_url, redis_prefix)
    assert stored == expected_labels(triples)
    for codec in CODECS:
        ids = {tx for labelled, _ in stored.values() for tx in labelled if tx.startswith(codec)}
        assert len(ids) == PER_CODEC, codec

    for partition in (0, 1):
        mine = [x for n, x in enumerate(sent) if n % PER_CODEC % 2 == partition]
        p = str(partition)
        newest = worker.metric("fraudstream_labels_newest_label_time_seconds", partition=p)
        assert newest == max(x.label_time_ms for x in mine) / 1000
        at = worker.metric("fraudstream_labels_last_applied_timestamp_seconds", partition=p)
        assert started <= at <= time.time()
        age = worker.metric("fraudstream_labels_last_applied_age_seconds", partition=p)
        assert 0 <= age <= time.time() - started
    assert worker.metric("fraudstream_labels_stale") == 0
