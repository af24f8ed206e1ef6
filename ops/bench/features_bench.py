"""Benchmark of the features package: simulator, offline features, online Redis store.

    .venv/bin/python ops/bench/features_bench.py [--redis-url URL] [--cluster-url URL]
        [--quick] [--hot N] [--hot-only] [--json FILE]

Without --redis-url a private redis-server is started on a free port and stopped after.
Online throughput is measured in steady state: the store is first loaded with 35 days of
the default simulated dataset (untimed, batches of 512, labels at event time + 7 days), then
the following transactions are applied in event-time order at each batch size, timing only
the store calls. With --cluster-url (any node of a Redis Cluster) the same steady state is
measured there at batch 512.

--hot N measures hot keys (``hot_arms``): 2N transactions of the simulated
stream, in order, every other one given one customer (then also one terminal), applied at
batch 64 into an empty prefix; Redis and client time per transaction by quarter, and the
slowest store call. --hot-only skips everything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import redis

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import MS_PER_DAY
from fraudstream.features.offline import compute_features
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.replay import replay
from fraudstream.features.simulator import SimulatorConfig, simulate

ONLINE_SIZES = {512: 150_000, 64: 40_000, 1: 3_000}
WARM_DAYS = 35


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument("--cluster-url", help="also measure batch 512 on this Redis Cluster")
    parser.add_argument("--quick", action="store_true", help="smaller dataset (60 days)")
    parser.add_argument("--hot", type=int, default=0, help="also measure hot keys of N tx")
    parser.add_argument("--hot-only", action="store_true", help="only the hot-key arms")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, object] = {"machine": _machine()}
    config = SimulatorConfig(n_days=60) if args.quick else SimulatorConfig()
    started = time.perf_counter()
    df = simulate(config)
    results["simulator"] = _figure("simulate", len(df), time.perf_counter() - started)
    if args.hot_only:
        with _redis(args.redis_url) as url:
            results["hot_keys"] = hot_arms(url, df, args.hot or 20_000)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    results["offline"] = _offline(df)
    with _redis(args.redis_url) as url:
        results["online_redis"] = _online_all(url, df)
        if args.hot:
            results["hot_keys"] = hot_arms(url, df, args.hot)
    if args.cluster_url:
        results["online_redis_cluster"] = _online_all(args.cluster_url, df, {512: 150_000})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _figure(what: str, n: int, seconds: float) -> dict[str, float]:
    rate = n / seconds
    print(f"{what:<28} {n:>10,} tx  {seconds:8.2f} s  {rate:>12,.0f} tx/s", flush=True)
    return {"transactions": n, "seconds": round(seconds, 3), "tx_per_s": round(rate)}


def _offline(df: pd.DataFrame) -> dict[str, float]:
    compute_features(df.head(10_000))  # warm-up (imports, allocator)
    started = time.perf_counter()
    compute_features(df)
    return _figure("offline compute_features", len(df), time.perf_counter() - started)


def _online_all(
    url: str, df: pd.DataFrame, sizes: dict[int, int] = ONLINE_SIZES
) -> list[dict[str, float]]:
    store = RedisStore.from_url(url, prefix=f"bench-{uuid.uuid4().hex[:8]}")
    warm_end = int(
        np.searchsorted(df["event_time_ms"], df["event_time_ms"].iloc[0] + WARM_DAYS * MS_PER_DAY)
    )
    started = time.perf_counter()
    replay(store, df.iloc[:warm_end], batch_size=512)
    took = time.perf_counter() - started
    print(f"{'(warm-up: 35 days, untimed)':<28} {warm_end:>10,} tx  {took:8.2f} s")
    figures = []
    start = warm_end
    probe = redis.Redis.from_url(url)  # on a cluster: one node's CPU, not all of them
    label = "online redis cluster" if store._cluster is not None else "online redis"
    for size, n in sizes.items():
        figures.append(_online(store, probe, df.iloc[start : start + n], size, label))
        start += n
    probe.close()
    store.drop()
    store.close()
    return figures


def _server_cpu_s(probe: redis.Redis) -> float:
    info = probe.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _online(
    store: RedisStore, probe: redis.Redis, part: pd.DataFrame, batch_size: int, label: str
) -> dict[str, float]:
    ids = part["transaction_id"].tolist()
    customers = part["customer_id"].tolist()
    terminals = part["terminal_id"].tolist()
    ms = part["event_time_ms"].to_numpy()
    amounts = part["amount"].to_numpy()
    n = len(part)
    batches = [
        TransactionBatch(
            ids[i : i + batch_size],
            customers[i : i + batch_size],
            terminals[i : i + batch_size],
            ms[i : i + batch_size],
            amounts[i : i + batch_size],
        )
        for i in range(0, n, batch_size)
    ]
    latencies = []
    server_cpu, client_cpu = _server_cpu_s(probe), time.process_time()
    started = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        store.apply(batch)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    server_cpu = _server_cpu_s(probe) - server_cpu
    client_cpu = time.process_time() - client_cpu
    figure = _figure(f"{label}, batch {batch_size}", n, elapsed)
    # CPU per transaction is what contention on a shared machine does not change; with a
    # core each for client and server, the busier of the two bounds the throughput
    figure["redis_cpu_us_per_tx"] = round(server_cpu / n * 1e6, 1)
    figure["client_cpu_us_per_tx"] = round(client_cpu / n * 1e6, 1)
    figure["cpu_bound_tx_per_s"] = round(n / max(server_cpu, client_cpu, 1e-9))
    figure["batch_size"] = batch_size
    figure["p50_ms"] = round(float(np.percentile(latencies, 50)) * 1000, 3)
    figure["p99_ms"] = round(float(np.percentile(latencies, 99)) * 1000, 3)
    print(
        f"{'':<28} batch latency p50 {figure['p50_ms']} ms, p99 {figure['p99_ms']} ms; "
        f"CPU/tx redis {figure['redis_cpu_us_per_tx']} us, client "
        f"{figure['client_cpu_us_per_tx']} us -> {figure['cpu_bound_tx_per_s']:,} tx/s "
        "with a core each"
    )
    return figure


HOT_BATCH = 64


def hot_arms(url: str, df: pd.DataFrame, n_hot: int) -> list[dict[str, object]]:
    """The store's time per transaction by quarter when one key gets every other one of 2N
    transactions: none (many keys), a customer, a customer and a terminal."""
    part = df.iloc[: 2 * n_hot].reset_index(drop=True)
    arms = []
    for name, columns in (
        ("many keys", ()),
        ("one customer", ("customer_id",)),
        ("one customer and one terminal", ("customer_id", "terminal_id")),
    ):
        hot = part.copy()
        for column in columns:
            hot.loc[hot.index % 2 == 0, column] = f"hot-{column}"
        arms.append(_hot_arm(url, hot, name))
    return arms


def _hot_arm(url: str, part: pd.DataFrame, name: str) -> dict[str, object]:
    store = RedisStore.from_url(url, prefix=f"hot-{uuid.uuid4().hex[:8]}", socket_timeout_s=60)
    probe = redis.Redis.from_url(url)
    slow = _slowlog_on(probe)
    batches = _batches(part, HOT_BATCH)
    quarter = -(-len(batches) // 4)
    redis_us, wall_us, worst_ms, flagged = [], [], 0.0, 0
    flagged_apply = getattr(store, "apply_flagged", None)  # absent before issue 24
    for q in range(4):
        chunk = batches[q * quarter : (q + 1) * quarter]
        n = sum(len(b) for b in chunk)
        server = _server_cpu_s(probe)
        started = time.perf_counter()
        for batch in chunk:
            t0 = time.perf_counter()
            if flagged_apply is not None:
                flagged += int((flagged_apply(batch)[1] != 0).sum())
            else:
                store.apply(batch)
            worst_ms = max(worst_ms, (time.perf_counter() - t0) * 1000)
        wall_us.append(round((time.perf_counter() - started) / n * 1e6, 1))
        redis_us.append(round((_server_cpu_s(probe) - server) / n * 1e6, 1))
    figure: dict[str, object] = {
        "arm": name,
        "transactions": len(part),
        "batch_size": HOT_BATCH,
        "redis_cpu_us_per_tx_by_quarter": redis_us,
        "wall_us_per_tx_by_quarter": wall_us,
        "slowest_apply_ms": round(worst_ms, 2),
        "script_call_ms": _script_calls_ms(probe) if slow else None,
        "rows_flagged": flagged,
    }
    print(
        f"hot keys, {name:<30} redis us/tx by quarter {redis_us}, wall {wall_us}; slowest "
        f"apply {figure['slowest_apply_ms']} ms, script calls (max, p99) "
        f"{figure['script_call_ms']}; {flagged} rows flagged",
        flush=True,
    )
    store.drop()
    store.close()
    probe.close()
    return figure


def _batches(part: pd.DataFrame, size: int) -> list[TransactionBatch]:
    whole = TransactionBatch.from_columns(
        part["transaction_id"].tolist(),
        part["customer_id"].tolist(),
        part["terminal_id"].tolist(),
        part["event_time_ms"].to_numpy(),
        part["amount"].to_numpy(),
    )
    return [whole.take(range(i, min(i + size, len(part)))) for i in range(0, len(part), size)]


def _slowlog_on(probe: redis.Redis) -> bool:
    """Log every script call over 0.2 ms (False where CONFIG is not allowed)."""
    try:
        probe.config_set("slowlog-log-slower-than", 200)
        probe.config_set("slowlog-max-len", 100_000)
        probe.slowlog_reset()
    except redis.RedisError:
        return False
    return True


def _script_calls_ms(probe: redis.Redis) -> dict[str, float]:
    """The slowest script call and the 99th percentile of those over 0.2 ms."""
    entries = probe.slowlog_get(100_000)
    calls = [e["duration"] / 1000 for e in entries if e["command"][:4].upper() in (b"EVAL", "EVAL")]
    if not calls:
        return {"max": 0.0, "p99": 0.0}
    return {"max": round(max(calls), 2), "p99": round(float(np.percentile(calls, 99)), 2)}


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("error: redis-server is not installed; pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    workdir = tempfile.mkdtemp(prefix="features-bench-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"error: redis-server did not start on port {port}")


def _machine() -> dict[str, object]:
    cpu = ""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return {
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "redis": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


if __name__ == "__main__":
    sys.exit(main())
