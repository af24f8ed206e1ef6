"""CPU of the label worker (``fraudstream features run``) per decision it folds into the KPIs.

    .venv/bin/python ops/bench/label_worker.py [--n 20000] [--rounds 2] \
        [--arm base=REV_OR_DIR --arm new=.] [--json FILE]

Each run writes ``--n`` decisions (serve's contract, keyed by customer, spread over ten hours
of event time) to a fresh 6-partition topic, starts the worker on it, and reads the worker's
CPU time (/proc, user + system) from its first /metrics answer to the moment its KPI table
has counted every decision (``fraudstream_kpi_decisions``). Start-up is outside the window,
the join included. With several ``--arm`` the arms run alternately, round by round (A B,
B A, ...), so each pair sees the same spell of this shared machine. An arm is NAME=TREE
(``trees.py``); the default is the working tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
from trees import arm_tree, parse_arm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 6
DECISIONS = ("approve",) * 8 + ("review", "decline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--n", type=int, default=20_000, help="decisions per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--arm", action="append", default=[], metavar="NAME=TREE")
    p.add_argument("--timeout-s", type=float, default=300.0, help="per run")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        p.error("--n and --rounds must be at least 1")
    specs = [parse_arm(p, text) for text in args.arm] or [("tree", str(ROOT))]
    with contextlib.ExitStack() as stack:
        arms = [(name, stack.enter_context(arm_tree(spec))) for name, spec in specs]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in arms}
        for r in range(args.rounds):
            order = arms if r % 2 == 0 else arms[::-1]
            for name, tree in order:
                run = measure(args.bootstrap, args.redis_url, args.n, tree, args.timeout_s)
                runs[name].append(run)
                print(
                    f"round {r + 1} {name}: {run['us_per_decision']:.0f} µs of CPU per decision "
                    f"({run['cpu_s']:.2f} s over {run['wall_s']:.1f} s wall)",
                    flush=True,
                )
    summary = {
        name: statistics.median(run["us_per_decision"] for run in rs) for name, rs in runs.items()
    }
    for name, median in summary.items():
        print(f"{name}: median {median:.0f} µs per decision over {len(runs[name])} runs")
    if args.json:
        result = {
            "machine": machine.describe(args.redis_url),
            "n": args.n,
            "arms": dict(specs),
            "runs": runs,
            "median_us_per_decision": summary,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def measure(
    bootstrap: str, redis_url: str, n: int, tree: Path = ROOT, timeout_s: float = 300.0
) -> dict[str, float]:
    """One run: the worker of ``tree`` on ``n`` fresh decisions; its CPU seconds, the wall
    seconds and the CPU µs per decision."""
    rid = uuid.uuid4().hex[:8]
    topics = {k: f"labelbench-{rid}-{k}" for k in ("decisions", "labels", "labels-dlq")}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in topics.values()]
    ).values():
        future.result()
    try:
        _produce(bootstrap, topics["decisions"], rid, n)
        return _measure(bootstrap, redis_url, n, timeout_s, tree, rid, topics)
    finally:
        internal = [f"labelbench-{rid}-kpi-join", f"labelbench-{rid}-kpi-changelog"]
        for future in admin.delete_topics([*topics.values(), *internal]).values():
            with contextlib.suppress(Exception):  # an internal topic the worker never made
                future.result()


def _produce(bootstrap: str, topic: str, rid: str, n: int) -> None:
    rng = random.Random(n)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    now = int(time.time() * 1000)
    start = now - 10 * 3_600_000
    for i in range(n):
        decision = {
            "transaction_id": f"{rid}-{i}",
            "customer_id": str(i % 5000),
            "terminal_id": str(i % 2000),
            "amount": round(rng.random() * 200, 2),
            "event_time": start + i * (10 * 3_600_000 // n),
            "score": rng.random(),
            "decision": rng.choice(DECISIONS),
            "model_version": "v0001",
            "reasons": None,
            "latency_ms": {"total": 12.0, "decode": 0.2, "features": 2.1, "score": 0.5},
            "budget_ms": 50.0,
            "deadline_met": True,
            "degraded": None,
            "scored_at": now,
            "flags": None,
        }
        producer.produce(topic, key=decision["customer_id"].encode(), value=orjson.dumps(decision))
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60):
        msg = f"could not write the decisions to {topic}"
        raise RuntimeError(msg)


def _measure(  # noqa: PLR0913 - one run's parameters, passed on once
    bootstrap: str,
    redis_url: str,
    n: int,
    timeout_s: float,
    tree: Path,
    rid: str,
    topics: dict[str, str],
) -> dict[str, float]:
    port = 50_000 + random.randint(0, 9_000)
    cmd = [
        sys.executable, "-m", "fraudstream.stream.cli", "--log-level", "WARNING",
        "features", "run", "--bootstrap-servers", bootstrap,
        "--redis-url", redis_url, "--redis-prefix", f"labelbench-{rid}",
        "--group-id", f"labelbench-{rid}", "--labels-topic", topics["labels"],
        "--labels-dlq-topic", topics["labels-dlq"], "--decisions-topic", topics["decisions"],
        "--web-port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryDirectory(prefix="label-bench-") as tmp:
        log = Path(tmp) / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        try:
            return _wait(n, timeout_s, proc, port, log)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(
    n: int, timeout_s: float, proc: subprocess.Popen[bytes], port: int, log: Path
) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    started: tuple[float, float] | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"the worker exited ({proc.returncode}):\n{log.read_text()[-2000:]}"
            raise RuntimeError(msg)
        time.sleep(0.2)
        counted = _decisions_counted(port)
        if counted is None:
            continue
        if started is None:
            started = (_cpu_s(proc), time.monotonic())
        if counted >= n:
            cpu, wall = _cpu_s(proc) - started[0], time.monotonic() - started[1]
            return {"cpu_s": cpu, "wall_s": wall, "us_per_decision": cpu / n * 1e6}
    msg = f"the worker did not count {n} decisions in {timeout_s} s"
    raise RuntimeError(msg)


def _cpu_s(proc: subprocess.Popen[bytes]) -> float:
    cpu = machine.process_cpu_s(proc.pid)
    if cpu is None:
        msg = f"the worker (pid {proc.pid}) is gone"
        raise RuntimeError(msg)
    return cpu


def _decisions_counted(port: int) -> float | None:
    """Decisions the KPI table holds (all hours), or None before the worker answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fraudstream_kpi_decisions"
    )


if __name__ == "__main__":
    raise SystemExit(main())
