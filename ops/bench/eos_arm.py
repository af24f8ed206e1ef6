"""Exactly-once beside at-least-once, in one run (issue 19): latency as a live read_committed
consumer sees it at fixed offered rates, the rungs taken, the backlog drain rate in each
mode, and how long an exactly-once serve SIGKILLed mid-stream takes, restarted at once, to
commit a decision again."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson
from arms import HERE, PARTITIONS, Env, stop
from broker import Item, produce_paced, read_all, wait_committed
from serve_arms import BUDGET_MS, _alive, _spec, fraudstream
from serve_process import start, tail
from workload import Feed

GUARANTEES = ("at-least-once", "exactly-once")
RATES = (2_000.0, 5_000.0)
RECOVERY_RATE = 1_000.0


class LiveReader:
    """``live_reader.py`` in its own process: when each decision became visible."""

    def __init__(self, env: Env, topic: str, name: str) -> None:
        self.out = env.workdir / f"{name}-visible.txt"
        args = [sys.executable, str(HERE / "live_reader.py"), env.bootstrap, topic, str(self.out)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "ready": assigned

    def stop(self) -> dict[str, int]:
        """Transaction id -> epoch ms it first became visible (duplicates: ``dupes``)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        seen: dict[str, int] = {}
        self.dupes = 0
        for line in self.out.read_text().splitlines():
            tid, at = line.split()
            if tid in seen:
                self.dupes += 1
            else:
                seen[tid] = int(at)
        return seen


ORDER = ("at-least-once", "exactly-once", "exactly-once", "at-least-once") * 2
"""Guarantees in the order they run, alternated: this VM's speed drifts within minutes, so
each exactly-once round is paired with the at-least-once round beside it. Four pairs: one
slow spell of the VM moved a single pair's p99 gap by 50 ms or more, so two pairs' median
was as much the spell as the design."""


def compare(env: Env, feed: Feed, seconds: float) -> dict[str, Any]:
    """Both guarantees, alternated (``ORDER``) on fresh topics: latency per offered rate as
    a read_committed reader sees it, and the rungs taken; per guarantee the median of its
    rounds, and every round."""
    out: dict[str, Any] = {"rates": list(RATES), "seconds": seconds, "order": list(ORDER)}
    runs: dict[str, list[dict[str, Any]]] = {g: [] for g in GUARANTEES}
    for i, guarantee in enumerate(ORDER):
        runs[guarantee].append(_paced(env, feed, guarantee, seconds, f"r{i}"))
    out["modes"] = {g: _rounds(results) for g, results in runs.items()}
    return out


def _rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    failed = next((r["failed"] for r in results if r.get("failed")), None)
    if failed is not None:
        return {"failed": failed}
    rounds = [r["rows"] for r in results]
    return {
        "rows": [_median_row([rows[k] for rows in rounds]) for k in range(len(rounds[0]))],
        "rounds": rounds,
        "duplicates_seen": sum(r["duplicates_seen"] for r in results),
    }


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One rate's rounds: counts and rungs summed, every figure the median of the rounds."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float) and key != "offered_rate":
            values = [r[key] for r in rows if r[key] is not None]
            out[key] = round(float(np.median(values)), 5) if values else None
    out["count"] = sum(r["count"] for r in rows)
    out["visible"] = sum(r["visible"] for r in rows)
    out["degraded"] = dict(sum((Counter(r["degraded"]) for r in rows), Counter()))
    out["rounds"] = len(rows)
    return out


def _paced(env: Env, feed: Feed, guarantee: str, seconds: float, tag: str) -> dict[str, Any]:
    name = f"eos-{guarantee}-{tag}"
    input_topic = env.topics.create(f"{name}-in", PARTITIONS)
    spec = _spec(env, name, input_topic, BUDGET_MS, extra=("--guarantee", guarantee))
    log = env.workdir / f"{name}.log"
    reader = LiveReader(env, spec.decisions, name)
    proc = start(spec, log)
    phases: list[tuple[float, list[Item]]] = []
    failed = None
    try:
        probe = feed.take(1)  # serve is up once it answered
        produce_paced(env.bootstrap, input_topic, probe, RATES[0])
        _n, failed = wait_committed(env.bootstrap, spec.decisions, 1, 120, alive=_alive(proc))
        warm = feed.take(int(RATES[0] * 2))  # then 2 s at the first rate, not measured
        produce_paced(env.bootstrap, input_topic, warm, RATES[0])
        expected = 1 + len(warm)
        _n, failed = wait_committed(
            env.bootstrap, spec.decisions, expected, 120, alive=_alive(proc)
        )
        for rate in RATES if failed is None else ():
            items = feed.take(int(rate * seconds))
            phases.append((rate, items))
            produce_paced(env.bootstrap, input_topic, items, rate)
            expected += len(items)
            _n, failed = wait_committed(
                env.bootstrap, spec.decisions, expected, 300, alive=_alive(proc)
            )
            if failed is not None:
                break
    finally:
        stop(proc)
        visible = reader.stop()
    if failed is not None:
        return {"failed": f"{failed}; {log.name} tail: {tail(log, 600)!r}"}
    sent = {
        str(orjson.loads(r.value)["transaction_id"]): r.timestamp_ms
        for r in read_all(env.bootstrap, input_topic)
    }
    written = read_all(env.bootstrap, spec.decisions, committed=expected)
    decisions = {str(d["transaction_id"]): d for d in (orjson.loads(r.value) for r in written)}
    rows = [_row(rate, items, sent, visible, decisions) for rate, items in phases]
    return {"rows": rows, "duplicates_seen": reader.dupes}


def _row(
    rate: float,
    items: list[Item],
    sent: dict[str, int],
    visible: dict[str, int],
    decisions: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    ids = [str(orjson.loads(v)["transaction_id"]) for _, v in items]
    lat = np.sort([visible[i] - sent[i] for i in ids if i in visible]).astype(float)
    reported = np.asarray([decisions[i]["latency_ms"]["total"] for i in ids if i in decisions])
    rungs = Counter(decisions[i].get("degraded") or "full" for i in ids if i in decisions)
    met = sum(1 for i in ids if i in decisions and decisions[i]["deadline_met"])

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 2) if a.size else None

    return {
        "offered_rate": rate,
        "count": len(ids),
        "visible": len(lat),
        "visible_p50_ms": pct(lat, 50),
        "visible_p99_ms": pct(lat, 99),
        "visible_p999_ms": pct(lat, 99.9),
        "reported_total_p99_ms": pct(reported, 99),
        "deadline_met": round(met / len(ids), 5) if ids else None,
        "degraded": dict(rungs),
        "full_rung_share": round(rungs["full"] / len(ids), 5) if ids else None,
    }


def drains(env: Env, backlog: list[Item]) -> dict[str, Any]:
    """The full-path backlog drain in each mode (the headline arm's budget)."""
    out = {}
    for guarantee in GUARANTEES:
        arm = fraudstream(
            env, f"drain-{guarantee}", 60_000.0, backlog, extra=("--guarantee", guarantee)
        )
        out[guarantee] = arm.as_dict()
    return out


def recovery(env: Env, feed: Feed) -> dict[str, Any]:
    """Exactly-once serve at ``RECOVERY_RATE``: SIGKILL once 1,000 decisions are visible,
    restart at once, and time from the restart to the first decision committed after it."""
    name = "eos-recovery"
    input_topic = env.topics.create(f"{name}-in", PARTITIONS)
    spec = _spec(env, name, input_topic, BUDGET_MS, extra=("--guarantee", "exactly-once"))
    logs = [env.workdir / f"{name}-a.log", env.workdir / f"{name}-b.log"]
    items = feed.take(int(RECOVERY_RATE * 12))
    first = start(spec, logs[0])
    producer = _Background(env, input_topic, items)
    _n, why = wait_committed(env.bootstrap, spec.decisions, 1000, 120, alive=_alive(first))
    if why is not None:
        stop(first)
        producer.join()
        return {"failed": f"{why}; {tail(logs[0], 600)!r}"}
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = time.time_ns() // 1_000_000
    restarted = time.monotonic()
    second = start(spec, logs[1])
    try:
        _n, why = _first_new_commit(env, spec.decisions, killed_at, restarted, second)
        recovered_s = round(time.monotonic() - restarted, 2)
        producer.join()
        _n, why2 = wait_committed(
            env.bootstrap, spec.decisions, len(items), 180, alive=_alive(second)
        )
    finally:
        stop(second)
    reader = LiveReader(env, spec.decisions, f"{name}-all")
    time.sleep(3)  # it reads the whole topic from the start
    seen = reader.stop()
    if why or why2:
        return {"failed": f"{why or why2}; {tail(logs[1], 600)!r}"}
    ids = {str(orjson.loads(v)["transaction_id"]) for _, v in items}
    return {
        "rate": RECOVERY_RATE,
        "restart_to_first_commit_s": recovered_s,
        "decided": len(set(seen) & ids),
        "inputs": len(ids),
        "duplicates_seen": reader.dupes,
    }


def _first_new_commit(
    env: Env, topic: str, after_ms: int, restarted: float, proc: subprocess.Popen[bytes]
) -> tuple[int, str | None]:
    """Wait until a read_committed reader sees a decision scored after ``after_ms``."""
    from confluent_kafka import Consumer

    from fraudstream.stream.kafka.consume import take_queued

    consumer = Consumer(
        {
            "bootstrap.servers": env.bootstrap,
            "group.id": f"{topic}-first-{int(restarted)}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    try:
        while time.monotonic() - restarted < 120:
            for m in take_queued(consumer, 1000, 0.02):
                if m.error() is None and orjson.loads(m.value())["scored_at"] > after_ms:
                    return 1, None
            if proc.poll() is not None:
                return 0, "the restarted serve exited"
    finally:
        consumer.close()
    return 0, "no decision committed within 120 s of the restart"


class _Background:
    """Produces ``items`` at the recovery rate on a thread."""

    def __init__(self, env: Env, topic: str, items: list[Item]) -> None:
        import threading

        self._thread = threading.Thread(
            target=produce_paced, args=(env.bootstrap, topic, items, RECOVERY_RATE), daemon=True
        )
        self._thread.start()

    def join(self) -> None:
        self._thread.join(120)
