"""Fixtures and helpers for tests that run serve: a small simulated history, a trained registry,
and ``serve_factory`` which runs ``fraudstream serve`` as a real subprocess on its own topics,
consumer group and Redis key prefix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import xgboost as xgb
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudstream.features.definitions import FEATURE_NAMES, FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.models.manifest import Thresholds, TrainWindow
from fraudstream.models.registry import Registry
from tests.infra import ROOT, free_port, reader


@pytest.fixture(scope="session")
def history() -> pd.DataFrame:
    """About 6,000 simulated transactions over 20 days, in event-time order."""
    cfg = SimulatorConfig(n_customers=150, n_terminals=300, n_days=20, seed=7)
    return simulate(cfg).reset_index(drop=True)


def train_model(df: pd.DataFrame, rounds: int, seed: int) -> xgb.Booster:
    x = compute_features(df, FeatureConfig()).astype(np.float32)
    dtrain = xgb.DMatrix(x, label=df["is_fraud"].to_numpy(), feature_names=list(FEATURE_NAMES))
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": 4,
        "eta": 0.3,
        "seed": seed,
        "nthread": 1,
    }
    return xgb.train(params, dtrain, num_boost_round=rounds)


def register(registry: Registry, booster: xgb.Booster, promote: bool = True) -> str:
    version = registry.register(
        booster,
        feature_names=FEATURE_NAMES,
        schema_hash=FeatureConfig().schema_hash(),
        params={"max_depth": 4},
        train_window=TrainWindow("2018-04-01T00:00:00+00:00", "2018-04-21T00:00:00+00:00"),
        data_fingerprint="test",
        metrics={},
        thresholds=Thresholds(review=0.2, decline=0.8),
        truncated_thresholds=Thresholds(review=0.2, decline=0.8),
        device="cpu",
        truncation_trees=5,
    )
    if promote:
        registry.promote(version)
    return version


@pytest.fixture(scope="session")
def trained(history: pd.DataFrame) -> tuple[xgb.Booster, xgb.Booster]:
    return train_model(history, 20, 1), train_model(history, 12, 2)


@pytest.fixture
def registry(tmp_path: Path, trained: tuple[xgb.Booster, xgb.Booster]) -> Registry:
    reg = Registry(tmp_path / "registry")
    register(reg, trained[0])
    return reg


def tx_payload(row: Any) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": str(row.transaction_id),
            "event_time": int(row.event_time_ms),
            "customer_id": str(row.customer_id),
            "terminal_id": str(row.terminal_id),
            "amount": float(row.amount),
        }
    )


def produce(
    bootstrap: str,
    topic: str,
    items: list[tuple[bytes | None, bytes | None]],
    rate: float | None = None,
) -> None:
    """Produce (key, value) pairs in order; at ``rate`` messages/s when given."""
    # A new idempotent producer spends its first few hundred ms getting a producer id, and
    # the Kafka timestamp is taken at produce(): paced runs (latency tests) use a plain
    # producer whose metadata is fetched before the clock starts.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": rate is None, "linger.ms": 2}
    )
    producer.list_topics(topic, timeout=10)
    start = time.monotonic()
    for i, (key, value) in enumerate(items):
        if rate:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(60) == 0


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 90, settle_s: float = 1.0
) -> list[Any]:
    """Read a topic from the start with read_committed until ``expected`` messages arrived
    (then ``settle_s`` more, so that duplicates would show) or the timeout passed."""
    consumer = reader(bootstrap, topic, committed=True)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    out.append(msg)
            if len(out) >= expected:
                settle_until = settle_until or time.monotonic() + settle_s
                if time.monotonic() >= settle_until:
                    break
    finally:
        consumer.close()
    return out


def decisions_of(msgs: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value()) for m in msgs]


@dataclass
class ServeHandle:
    """A running ``fraudstream serve`` subprocess and its topics."""

    proc: subprocess.Popen[bytes]
    input: str
    decisions: str
    alerts: str
    dlq: str
    metrics_port: int
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.args[self.args.index("--redis-prefix") + 1]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - loopback probe
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1
            ) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log_text()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"serve not ready in {timeout_s} s:\n{self.log_text()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(  # noqa: S310 - loopback probe
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
        ) as resp:
            return str(resp.read().decode())

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


class ServeFactory:
    """Starts serve processes that share one set of topics, group and Redis prefix;
    ``reset()`` makes the next one start on fresh topics, group and prefix."""

    def __init__(
        self, bootstrap: str, redis_url: str, topic_factory: Callable[..., str], tmp_path: Path
    ) -> None:
        self.bootstrap, self.redis_url = bootstrap, redis_url
        self.topic_factory, self.tmp_path = topic_factory, tmp_path
        self.handles: list[ServeHandle] = []
        self.names: dict[str, str] = {}
        self.unique = uuid.uuid4().hex[:12]

    def reset(self) -> None:
        self.names = {}
        self.unique = uuid.uuid4().hex[:12]

    def __call__(
        self,
        registry: Path,
        partitions: int = 1,
        extra: list[str] | None = None,
        redis: str | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> ServeHandle:
        if not self.names:
            make = self.topic_factory
            self.names = {
                "input": make("tx", partitions),
                "decisions": make("dec"),
                "alerts": make("alert"),
                "dlq": make("dlq"),
            }
        n = self.names
        port = free_port()
        log = self.tmp_path / f"serve-{len(self.handles)}.log"
        args = [
            sys.executable,
            "-m",
            "fraudstream.stream.cli",
            "--log-level",
            "INFO",
            "serve",
            "--bootstrap-servers",
            self.bootstrap,
            "--redis-url",
            redis or self.redis_url,
            "--redis-prefix",
            f"t{self.unique}",
            "--registry",
            str(registry),
            "--group-id",
            f"g-{self.unique}",
            "--input-topic",
            n["input"],
            "--decisions-topic",
            n["decisions"],
            "--alerts-topic",
            n["alerts"],
            "--dlq-topic",
            n["dlq"],
            "--metrics-port",
            str(port),
            "--model-poll-s",
            "0.2",
            *(extra or []),
        ]
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(os.environ) | (env or {}),
            )
        handle = ServeHandle(
            proc, n["input"], n["decisions"], n["alerts"], n["dlq"], port, log, args
        )
        self.handles.append(handle)
        if wait:
            handle.wait_ready()
        return handle

    def stop_all(self) -> None:
        for h in self.handles:
            h.stop()


@pytest.fixture
def serve_factory(
    kafka_bootstrap: str, redis_url: str, topic_factory: Callable[..., str], tmp_path: Path
) -> Iterator[ServeFactory]:
    factory = ServeFactory(kafka_bootstrap, redis_url, topic_factory, tmp_path)
    yield factory
    factory.stop_all()


def topic_end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4()}"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
    finally:
        consumer.close()


def batch_of(df: pd.DataFrame) -> Any:
    """The rows of a canonical frame as a ``TransactionBatch``, in order."""
    from fraudstream.features.batch import TransactionBatch

    return TransactionBatch.from_columns(
        df["transaction_id"].astype(str).tolist(),
        df["customer_id"].astype(str).tolist(),
        df["terminal_id"].astype(str).tolist(),
        df["event_time_ms"].to_numpy(),
        df["amount"].to_numpy(),
    )


def assert_store_equals_one_application(
    redis_url: str, prefix: str, df: pd.DataFrame, customer_state: str = "redis"
) -> None:
    """The store's counters equal one application of every input transaction.

    Memoised feature vectors depend on the order partitions were drained in, so the check
    reads the counters themselves: probe transactions after the data, one per customer (its
    1/7/30-day windows) and one per terminal a label delay later (its delayed windows),
    applied identically to the Redis store and to a fresh in-memory store fed the input once.
    """
    from fraudstream.features.local_store import open_store
    from fraudstream.features.memory_store import MemoryStore

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
    online_store = open_store(redis_url, prefix, customer_state=customer_state)  # type: ignore[arg-type]
    online = online_store.apply(batch_of(probes))
    reference = MemoryStore(FeatureConfig())
    reference.apply(batch_of(df))
    offline = reference.apply(batch_of(probes))
    n = len(customers)
    np.testing.assert_allclose(online[:n, 3:9], offline[:n, 3:9], rtol=1e-9, atol=0)
    np.testing.assert_allclose(online[n:, 9:], offline[n:, 9:], rtol=1e-9, atol=0)
    assert offline[:n, 3:9].any() and offline[n:, 9:].any()  # the probes do see the data
