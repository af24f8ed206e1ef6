"""Producers whose clocks are off, against a real serve: a clock 5 s ahead never yields
negative latency nor hides a real delay (serve frozen 3 s), a clock 5 s behind does not make
every decision late, and the skew serve corrected is exported per partition."""

from __future__ import annotations

import re
import signal
import time

import pandas as pd
import pytest
from confluent_kafka import Producer

from fraudstream.models.registry import Registry
from tests.serving import ServeFactory, ServeHandle, consume_all, decisions_of, tx_payload

pytestmark = pytest.mark.integration

BUDGET_MS = 2000
"""Loose enough that no slow spell of a shared VM breaks the on-time assertions."""
SKEW_MS = 5000


def _produce_skewed(
    bootstrap: str, topic: str, df: pd.DataFrame, skew_ms: int, rate: float
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    producer.list_topics(topic, timeout=10)
    start = time.monotonic()
    for i, row in enumerate(df.itertuples()):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        stamp = time.time_ns() // 1_000_000 + skew_ms
        producer.produce(
            topic, key=str(row.customer_id).encode(), value=tx_payload(row), timestamp=stamp
        )
        producer.poll(0)
    assert producer.flush(30) == 0


def _skew_metric(serve: ServeHandle) -> float:
    found = re.search(
        r'^fraudstream_producer_clock_skew_seconds\{partition="0"\} (\S+)$', serve.metrics(), re.M
    )
    assert found, "no skew exported"
    return float(found.group(1))


def _decided(bootstrap: str, serve: ServeHandle, df: pd.DataFrame, total: int) -> list[dict]:  # type: ignore[type-arg]
    ids = set(df["transaction_id"].astype(str))
    out = decisions_of(consume_all(bootstrap, serve.decisions, total, settle_s=0))
    return [d for d in out if d["transaction_id"] in ids]


def test_a_clock_ahead_neither_goes_negative_nor_hides_a_frozen_serve(
    serve_factory: ServeFactory, registry: Registry, history: pd.DataFrame, kafka_bootstrap: str
) -> None:
    serve = serve_factory(registry.root, extra=["--budget-ms", str(BUDGET_MS)])
    steady, frozen = history.iloc[:300], history.iloc[300:350]
    _produce_skewed(kafka_bootstrap, serve.input, steady, SKEW_MS, rate=200)
    out = _decided(kafka_bootstrap, serve, steady, len(steady))
    assert len(out) == len(steady)
    assert all(d["latency_ms"]["total"] >= 0 for d in out)
    assert all(d["deadline_met"] for d in out)
    time.sleep(5.5)  # the skew gauge is refreshed every 5 s
    assert abs(_skew_metric(serve) - SKEW_MS / 1000) < 0.5

    serve.proc.send_signal(signal.SIGSTOP)
    try:
        _produce_skewed(kafka_bootstrap, serve.input, frozen, SKEW_MS, rate=1000)
        time.sleep(3)
    finally:
        serve.proc.send_signal(signal.SIGCONT)
    late = _decided(kafka_bootstrap, serve, frozen, len(steady) + len(frozen))
    assert len(late) == len(frozen)
    assert all(d["latency_ms"]["total"] >= 2500 for d in late), [
        d["latency_ms"]["total"] for d in late
    ]
    assert not any(d["deadline_met"] for d in late)


def test_a_clock_behind_does_not_make_every_decision_late(
    serve_factory: ServeFactory, registry: Registry, history: pd.DataFrame, kafka_bootstrap: str
) -> None:
    serve = serve_factory(registry.root, extra=["--budget-ms", str(BUDGET_MS)])
    df = history.iloc[:300]
    _produce_skewed(kafka_bootstrap, serve.input, df, -SKEW_MS, rate=200)
    out = _decided(kafka_bootstrap, serve, df, len(df))
    assert len(out) == len(df)
    # the very first records of the partition come before any sample: taken as stamped
    on_time = [d for d in out[20:] if d["deadline_met"]]
    assert len(on_time) == len(out) - 20
    assert all(0 <= d["latency_ms"]["total"] < BUDGET_MS for d in on_time)
    time.sleep(5.5)
    assert abs(_skew_metric(serve) + SKEW_MS / 1000) < 0.5
