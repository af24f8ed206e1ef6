"""Faults injected into real processes: serve killed, joined, fenced; poison input; bad models.

Every test counts, per transaction_id, what came out against what went in.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

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


def _items(df: pd.DataFrame) -> list[tuple[bytes | None, bytes | None]]:
    return [(str(r.customer_id).encode(), tx_payload(r)) for r in df.itertuples()]


def _wait_for(count: int, bootstrap: str, topic: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(consume_all(bootstrap, topic, count, timeout_s=2, settle_s=0)) >= count:
            return
    raise AssertionError(f"fewer than {count} messages on {topic}")


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_sigkill_mid_stream_then_restart(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    redis_url: str,
    guarantee: str,
) -> None:
    df = history.iloc[:3000]
    extra = ["--guarantee", guarantee, "--budget-ms", "60000", "--max-batch", "64"]
    first = serve_factory(registry.root, partitions=3, extra=extra)
    produce(kafka_bootstrap, first.input, _items(df))
    _wait_for(500, kafka_bootstrap, first.decisions)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    second = serve_factory(registry.root, partitions=3, extra=extra)
    out = decisions_of(consume_all(kafka_bootstrap, second.decisions, len(df), settle_s=3))
    counts = Counter(d["transaction_id"] for d in out)
    assert set(counts) == set(df["transaction_id"].astype(str))
    if guarantee == "exactly-once":
        assert max(counts.values()) == 1, "a read_committed reader saw a duplicate"
    else:
        first_seen: dict[str, tuple[float, str]] = {}
        for d in out:
            key = (d["score"], d["decision"])
            assert first_seen.setdefault(d["transaction_id"], key) == key
    assert_store_equals_one_application(redis_url, second.prefix, df)


def test_second_member_joins_and_leaves_exactly_once(
    serve_factory: ServeFactory, registry: Registry, history: pd.DataFrame, kafka_bootstrap: str
) -> None:
    df = history.iloc[:4000]
    extra = ["--guarantee", "exactly-once", "--budget-ms", "60000", "--max-batch", "64"]
    one = serve_factory(registry.root, partitions=6, extra=extra)
    items = _items(df)
    produce(kafka_bootstrap, one.input, items[:1500])
    two = serve_factory(registry.root, partitions=6, extra=extra)
    produce(kafka_bootstrap, one.input, items[1500:3000], rate=3000)
    assert two.stop() == 0  # leaves the group cleanly mid-stream
    produce(kafka_bootstrap, one.input, items[3000:])
    out = decisions_of(consume_all(kafka_bootstrap, one.decisions, len(df), settle_s=3))
    counts = Counter(d["transaction_id"] for d in out)
    assert set(counts) == set(df["transaction_id"].astype(str))
    assert max(counts.values()) == 1


def test_zombie_with_the_same_transactional_id_is_fenced(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    unique: str,
) -> None:
    df = history.iloc[:2000]
    extra = [
        "--guarantee",
        "exactly-once",
        "--budget-ms",
        "60000",
        "--max-batch",
        "32",
        "--transactional-id",
        f"zombie-{unique}",
    ]
    old = serve_factory(registry.root, partitions=2, extra=extra)
    produce(kafka_bootstrap, old.input, _items(df)[:1000])
    _wait_for(200, kafka_bootstrap, old.decisions)
    new = serve_factory(registry.root, partitions=2, extra=extra)
    produce(kafka_bootstrap, old.input, _items(df)[1000:])
    deadline = time.monotonic() + 60
    while old.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert old.proc.returncode not in (None, 0), "the zombie must exit non-zero"
    assert "fenced" in old.log_text()
    out = decisions_of(consume_all(kafka_bootstrap, new.decisions, len(df), settle_s=3))
    counts = Counter(d["transaction_id"] for d in out)
    assert set(counts) == set(df["transaction_id"].astype(str))
    assert max(counts.values()) == 1


def _start_fails(serve_factory: ServeFactory, registry: Registry, expected: str) -> None:
    handle = serve_factory(registry.root, wait=False)
    assert handle.proc.wait(60) != 0
    assert expected in handle.log_text().lower(), handle.log_text()


def test_model_faults_at_start_exit_non_zero_with_a_clear_error(
    serve_factory: ServeFactory, registry: Registry
) -> None:
    version = registry.current()
    assert version is not None
    folder = registry.root / version
    model, manifest = folder / "model.ubj", folder / "manifest.json"
    good_model, good_manifest = model.read_bytes(), manifest.read_text()

    (registry.root / "CURRENT").write_text("v9999\n")
    _start_fails(serve_factory, registry, "v9999")
    (registry.root / "CURRENT").write_text(f"{version}\n")

    model.write_bytes(good_model[: len(good_model) // 2])  # truncated: checksum differs
    _start_fails(serve_factory, registry, "sha256")

    # a pickle whose checksum is right: refused for what it is, never unpickled
    evil = b"\x80\x04\x95" + b"\x00" * 64 + b"."
    model.write_bytes(evil)
    doc = json.loads(good_manifest)
    doc["sha256"] = hashlib.sha256(evil).hexdigest()
    manifest.write_text(json.dumps(doc))
    _start_fails(serve_factory, registry, "pickle")

    model.write_bytes(good_model)
    doc = json.loads(good_manifest)
    doc["schema_hash"] = "0" * 64
    manifest.write_text(json.dumps(doc))
    _start_fails(serve_factory, registry, "schema")
    manifest.write_text(good_manifest)


def test_failed_hot_swap_keeps_the_old_model_and_counts_the_error(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    trained: tuple[object, object],
) -> None:
    from tests.serving import register

    first = registry.current()
    serve = serve_factory(registry.root, extra=["--budget-ms", "60000"])
    second = register(registry, trained[1], promote=False)  # type: ignore[arg-type]
    (registry.root / second / "model.ubj").write_bytes(b"garbage that is not a model")
    # promote() refuses a corrupt file, so the pointer is edited by hand (or bit rot)
    (registry.root / "CURRENT.tmp").write_text(f"{second}\n")
    os.replace(registry.root / "CURRENT.tmp", registry.root / "CURRENT")
    deadline = time.monotonic() + 30
    while "fraudstream_model_load_errors_total 1.0" not in serve.metrics():
        assert time.monotonic() < deadline, serve.metrics()
        time.sleep(0.1)
    df = history.iloc[:300]
    produce(kafka_bootstrap, serve.input, _items(df))
    out = decisions_of(consume_all(kafka_bootstrap, serve.decisions, len(df)))
    assert len(out) == len(df)
    assert {d["model_version"] for d in out} == {first}
    assert serve.proc.poll() is None


def test_reprocessing_from_offset_zero_gives_identical_decisions(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    df = history.iloc[:1500]
    runs = []
    for _ in range(2):
        # a fresh factory state per run: fresh topics, group and Redis prefix
        handle = serve_factory(registry.root, extra=["--budget-ms", "60000"])
        produce(kafka_bootstrap, handle.input, _items(df))
        out = decisions_of(consume_all(kafka_bootstrap, handle.decisions, len(df)))
        handle.stop()
        runs.append({d["transaction_id"]: (d["score"], d["decision"], d["reasons"]) for d in out})
        serve_factory.reset()
    assert runs[0] == runs[1]
    assert len(runs[0]) == len(df)


def test_serve_never_restarts_on_poison_input(
    serve_factory: ServeFactory, registry: Registry, history: pd.DataFrame, kafka_bootstrap: str
) -> None:
    from tests.reliability.poison import poison_corpus

    corpus = poison_corpus()
    assert len(corpus) >= 50
    df = history.iloc[: len(corpus) * 3]
    items = _items(df)
    mixed: list[tuple[bytes | None, bytes | None]] = []
    for i, (key, value) in enumerate(corpus):
        mixed.extend(items[3 * i : 3 * i + 3])
        mixed.append((key, value))
    serve = serve_factory(registry.root, extra=["--budget-ms", "60000"])
    pid = serve.proc.pid
    produce(kafka_bootstrap, serve.input, mixed)
    out = decisions_of(consume_all(kafka_bootstrap, serve.decisions, len(df)))
    assert sorted(d["transaction_id"] for d in out) == sorted(df["transaction_id"].astype(str))
    dead = consume_all(kafka_bootstrap, serve.dlq, len(corpus))
    assert len(dead) == len(corpus)
    assert Counter(m.value() or b"" for m in dead) == Counter(v or b"" for _, v in corpus)
    for m in dead:
        assert dict(m.headers())["fraudstream.error.reason"]
    assert serve.proc.poll() is None and serve.proc.pid == pid
    os.kill(pid, 0)
