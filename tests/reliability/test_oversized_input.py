"""Oversized bad input against a real serve: messages as large as the broker accepts are
dead-lettered (whole when they fit the dead-letter topic, else cut down and marked), and
the transactions behind them on the same partition are decided by the same process."""

from __future__ import annotations

import hashlib
import os

import pandas as pd
import pytest
from confluent_kafka import Producer

from fraudstream.models.registry import Registry
from tests.serving import ServeFactory, consume_all, decisions_of, tx_payload

pytestmark = pytest.mark.reliability

BROKER_LIMIT = 1_048_588  # Kafka's default max.message.bytes: what the input topic accepts


def _produce_one_by_one(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2 * BROKER_LIMIT})
    for key, value in items:
        producer.produce(topic, key=key, value=value)
        assert producer.flush(30) == 0  # one record per batch: each as large as allowed


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_messages_as_large_as_the_broker_accepts_never_stop_serve(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    guarantee: str,
) -> None:
    df = history.iloc[:30]
    good = [(str(r.customer_id).encode(), tx_payload(r)) for r in df.itertuples()]
    big_value = b"\xfe" + os.urandom(999_999)  # 1,000,000 bytes, not JSON
    huge_value = b"x" * (BROKER_LIMIT - 600)  # the dead letter's headers push it over
    bad = [
        (b"k-big-value", big_value),
        (b"k" * 1_000_000, b"not json"),  # a 1,000,000-byte key with a bad value
        (b"k-huge-value", huge_value),
    ]
    serve = serve_factory(registry.root, extra=["--guarantee", guarantee, "--budget-ms", "60000"])
    pid = serve.proc.pid
    _produce_one_by_one(kafka_bootstrap, serve.input, good[:10] + bad + good[10:])

    out = decisions_of(consume_all(kafka_bootstrap, serve.decisions, len(df)))
    assert sorted(d["transaction_id"] for d in out) == sorted(df["transaction_id"].astype(str))
    dead = consume_all(kafka_bootstrap, serve.dlq, len(bad))
    assert len(dead) == len(bad)
    by_key = {m.key()[:16]: m for m in dead}
    whole = by_key[b"k-big-value"]
    assert whole.value() == big_value and "fraudstream.truncated" not in dict(whole.headers())
    long_key = by_key[b"k" * 16]
    assert long_key.key() == b"k" * 1_000_000 and long_key.value() == b"not json"
    cut = by_key[b"k-huge-value"]
    headers = dict(cut.headers())
    assert headers["fraudstream.truncated"] == b"value"
    assert headers["fraudstream.original.value.size"] == str(len(huge_value)).encode()
    digest = hashlib.sha256(huge_value).hexdigest().encode()
    assert headers["fraudstream.original.value.sha256"] == digest
    assert huge_value.startswith(cut.value()) and len(cut.value()) > BROKER_LIMIT - 4096
    assert headers["fraudstream.error.code"] == b"too_large"
    metrics = serve.metrics()
    assert _metric(metrics, "fraudstream_dead_letters_truncated_total") == 1
    assert _metric(metrics, "fraudstream_dead_letters_lost_total") == 0
    assert serve.proc.poll() is None and serve.proc.pid == pid
