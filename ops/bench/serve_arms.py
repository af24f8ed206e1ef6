"""The arms that run ``fraudstream serve``: backlog throughput, latency at fixed offered
rates, and one versus two processes in one group (throughput and rebalance pause)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import redis
import xgboost as xgb
from arms import HERE, PARTITIONS, ArmResult, Env, judge, rate, stop
from broker import (
    Item,
    Record,
    produce_backlog,
    produce_paced,
    read_all,
    wait_assignment,
    wait_committed,
    wait_count,
)
from machine import process_cpu_s
from serve_process import ServeSpec, start, tail
from workload import Feed

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.models import metrics

logger = logging.getLogger(__name__)

BUDGET_MS = 50.0
Phase = tuple[str, float, list[Item]]
"""An offered rate: its label, transactions per second and the transactions sent."""


def _spec(
    env: Env,
    arm: str,
    input_topic: str,
    budget_ms: float,
    append_time: bool = False,
    extra: tuple[str, ...] = (),
) -> ServeSpec:
    t = env.topics
    return ServeSpec(
        bootstrap=env.bootstrap,
        redis_url=env.redis_url,
        prefix=env.prefix(arm),
        registry=env.model.registry,
        group=f"bench-{t.run_id}-{arm}",
        input_topic=input_topic,
        decisions=t.create(f"{arm}-dec", PARTITIONS, append_time),
        alerts=t.create(f"{arm}-alert", PARTITIONS),
        dlq=t.create(f"{arm}-dlq"),
        budget_ms=budget_ms,
        extra=extra,
    )


def _ids(items: list[Item]) -> list[str]:
    return [str(orjson.loads(v)["transaction_id"]) for _, v in items]


def _decoded(records: list[Record]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def fraudstream(
    env: Env,
    name: str,
    budget_ms: float,
    backlog: list[Item],
    profile: Path | None = None,
    timeout_s: float = 900,
    extra: tuple[str, ...] = (),
) -> ArmResult:
    """Serve drains the backlog; decisions/s from the decisions' timestamps.

    The backlog is produced again to a topic of this arm's own right before serve starts:
    each record's budget starts at its Kafka timestamp, so a backlog left waiting through
    the other arms would be late on arrival and take the ladder's cheaper rungs."""
    input_topic = env.topics.create(f"{name}-in", PARTITIONS)
    produce_backlog(env.bootstrap, input_topic, backlog)
    spec = _spec(env, name, input_topic, budget_ms, append_time=True, extra=extra)
    log = env.workdir / f"{name}.log"
    redis_cpu, machine = _redis_cpu_s(env.redis_url), _machine_cpu_s()
    proc = start(spec, log, profile)
    transactional = "exactly-once" in extra
    wait = wait_committed if transactional else wait_count
    serve_cpu = None
    try:
        _count, why = wait(env.bootstrap, spec.decisions, env.n, timeout_s, alive=_alive(proc))
        serve_cpu = process_cpu_s(proc.pid)
        busy, idle = (b - a for a, b in zip(machine, _machine_cpu_s(), strict=True))
    finally:
        stop(proc)
    redis_cpu = _redis_cpu_s(env.redis_url) - redis_cpu
    out = read_all(env.bootstrap, spec.decisions, committed=env.n if transactional else None)
    if why is not None:
        why += f"; serve log tail: {tail(log, 600)!r}"
    decisions = _decoded(out)
    unique = len({d["transaction_id"] for d in decisions})
    if why is None and unique != env.n:
        why = f"{unique} distinct transactions decided of {env.n}"
    result = judge(name, env.n, out, why)
    result.detail |= {"budget_ms": budget_ms, **_ladder(decisions)}
    result.detail["offline_exact_share"] = exact_share(backlog, decisions, env.model.booster)
    # CPU per transaction of the whole drain, start-up included: Redis's (INFO, this arm
    # alone on it) and serve's own (every thread of the process)
    result.detail["redis_cpu_us_per_tx"] = round(redis_cpu / env.n * 1e6, 2)
    if serve_cpu is not None:
        result.detail["serve_cpu_us_per_tx"] = round(serve_cpu / env.n * 1e6, 2)
        # every core of the machine: serve, Redis, the broker and the arm's own reader
        result.detail["machine_cpu_us_per_tx"] = round(busy / env.n * 1e6, 2)
        result.detail["machine_busy_share"] = round(busy / max(busy + idle, 1e-9), 3)
    return result


def exact_share(
    backlog: list[Item], decisions: list[dict[str, Any]], booster: xgb.Booster
) -> float | None:
    """Of the decisions on the full path, the share whose score is the offline one: the
    backlog through ``compute_features`` in event-time order (no labels fed, as the arm's
    fresh store saw it), scored by the same model, within 1e-6. Below 1, serve gave some
    transactions other features than the offline computation (terminal windows missing
    records that reached serve more than a label delay late, e.g. one partition drained
    days of event time ahead of another)."""
    full = {str(d["transaction_id"]): float(d["score"]) for d in decisions if not d.get("degraded")}
    if not full:
        return None
    offline = _offline_scores(backlog, booster)
    same = sum(1 for tx, score in full.items() if abs(score - offline[tx]) <= 1e-6)
    return round(same / len(full), 5)


_OFFLINE: dict[tuple[int, bytes, int], dict[str, float]] = {}
"""Offline scores per backlog (every drain arm of a run drains the same one)."""


def _offline_scores(backlog: list[Item], booster: xgb.Booster) -> dict[str, float]:
    key = (len(backlog), backlog[0][1] if backlog else b"", id(booster))
    if key not in _OFFLINE:
        table = _unlabelled([v for _, v in backlog])
        x = compute_features(table, FeatureConfig()).astype(np.float32)
        scores = booster.inplace_predict(x).tolist()
        _OFFLINE[key] = dict(zip(table["transaction_id"], scores, strict=True))
    return _OFFLINE[key]


def _unlabelled(values: list[bytes]) -> pd.DataFrame:
    """Transactions as JSON payloads, as the canonical table ``compute_features`` takes,
    with no fraud labels (what serve's fresh store knows)."""
    sent = pd.DataFrame([orjson.loads(v) for v in values])
    return pd.DataFrame(
        {
            "transaction_id": sent["transaction_id"].astype(str),
            "event_time_ms": sent["event_time"].astype(np.int64),
            "customer_id": sent["customer_id"].astype(str),
            "terminal_id": sent["terminal_id"].astype(str),
            "amount": sent["amount"].astype(np.float64),
            "is_fraud": 0,
        }
    )


def _machine_cpu_s() -> tuple[float, float]:
    """(busy, idle) CPU seconds of every core since boot (``/proc/stat``)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:8]) - idle) / hz, idle / hz


def _redis_cpu_s(url: str) -> float:
    """Redis's CPU seconds so far (user + system, every thread: ``INFO cpu``)."""
    client = redis.Redis.from_url(url)
    try:
        cpu = client.info("cpu")
    finally:
        client.close()
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _ladder(decisions: list[dict[str, Any]]) -> dict[str, Any]:
    rungs = Counter(d.get("degraded") or "full" for d in decisions)
    met = sum(1 for d in decisions if d.get("deadline_met"))
    return {
        "degraded": dict(rungs),
        "full_rung_share": round(rungs["full"] / len(decisions), 5) if decisions else None,
        "deadline_met": round(met / len(decisions), 5) if decisions else None,
    }


@dataclass
class LatencyRun:
    """Per offered rate: the summary row and the sorted latencies (for the CDF plot)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    """One summary per offered rate."""
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    """Label -> sorted end-to-end latencies (ms)."""
    failed: str | None = None
    """Why the arm does not count."""


def latency(
    env: Env,
    feed: Feed,
    max_rate: float,
    fractions: tuple[float, ...],
    seconds: float,
    name: str = "latency",
    profile: Path | None = None,
    extra: tuple[str, ...] = (),
) -> LatencyRun:
    """Serve (50 ms budget, ``extra`` flags) under a paced producer at each fraction of
    ``max_rate``."""
    input_topic = env.topics.create(f"{name}-in", PARTITIONS)
    spec = _spec(env, name, input_topic, BUDGET_MS, extra=extra)
    log = env.workdir / f"{name}.log"
    run = LatencyRun()
    proc = start(spec, log, profile)
    phases, run.failed = _paced_run(
        env, feed, proc, log, input_topic, spec.decisions, max_rate, fractions, seconds
    )
    if run.failed is not None:
        return run
    inputs = read_all(env.bootstrap, input_topic)
    out = read_all(env.bootstrap, spec.decisions)
    _summarise(run, phases, inputs, out)
    if run.failed is None:
        _quality(run, phases, inputs, out, feed, env.model.booster)
    return run


def _quality(
    run: LatencyRun,
    phases: list[Phase],
    inputs: list[Record],
    out: list[Record],
    feed: Feed,
    booster: xgb.Booster,
) -> None:
    """Per offered rate, what the decisions were worth: the live scores' average precision
    and ROC AUC on the simulator's labels, beside the offline figures for the same
    transactions (the arm's whole input through ``compute_features``, no labels fed, as
    serve's fresh store saw it, scored by the same model), and the full path's share."""
    table = _unlabelled([r.value for r in inputs])
    x = compute_features(table, FeatureConfig()).astype(np.float32)
    offline = dict(zip(table["transaction_id"], booster.inplace_predict(x).tolist(), strict=True))
    live = {str(d["transaction_id"]): float(d["score"]) for d in _decoded(out)}
    for (_label, _offered, items), row in zip(phases, run.rows, strict=True):
        ids = _ids(items)
        y = feed.labels(ids)
        live_scores = np.asarray([live[i] for i in ids])
        offline_scores = np.asarray([offline[i] for i in ids])
        full = row["degraded"].get("full", 0)
        row |= {
            "full_rung_share": round(full / len(ids), 5),
            "frauds": int(y.sum()),
            "live_ap": _rounded(metrics.average_precision(y, live_scores)),
            "offline_ap": _rounded(metrics.average_precision(y, offline_scores)),
            "live_auc": _rounded(metrics.roc_auc(y, live_scores)),
            "offline_auc": _rounded(metrics.roc_auc(y, offline_scores)),
        }


def _rounded(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None


def _paced_run(
    env: Env,
    feed: Feed,
    proc: subprocess.Popen[bytes],
    log: Path,
    source: str,
    target: str,
    max_rate: float,
    fractions: tuple[float, ...],
    seconds: float,
) -> tuple[list[Phase], str | None]:
    """``_paced_phases`` against the started ``proc`` (serve, or the pass-through), which is
    stopped after; why it stopped short carries the end of ``log``."""
    try:
        phases, failed = _paced_phases(
            env, feed, source, target, _alive(proc), max_rate, fractions, seconds
        )
    finally:
        stop(proc)
    if failed is not None:
        failed += f"; {log.name} tail: {tail(log, 600)!r}"
    return phases, failed


def _paced_phases(
    env: Env,
    feed: Feed,
    source: str,
    target: str,
    alive: Callable[[], bool],
    max_rate: float,
    fractions: tuple[float, ...],
    seconds: float,
) -> tuple[list[Phase], str | None]:
    """Warm up, then each fraction of ``max_rate`` in turn: paced into ``source``, waiting
    until ``target`` has one output per input so far. Returns the phases and why it
    stopped short (None when it did not)."""
    phases: list[Phase] = []
    failed = _warm_up(env, feed, source, target, alive, max_rate)
    expected = 1 + int(max_rate * 0.25 * 2)
    for f in fractions if failed is None else ():
        offered = f * max_rate
        items = feed.take(max(int(offered * seconds), 100))
        phases.append((f"{f:.0%}", offered, items))
        produce_paced(env.bootstrap, source, items, offered)
        expected += len(items)
        _n, failed = wait_count(env.bootstrap, target, expected, 300, alive=alive)
        if failed is not None:
            break
        time.sleep(0.5)
    return phases, failed


def _alive(proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: proc.poll() is None


def _warm_up(
    env: Env, feed: Feed, source: str, target: str, alive: Callable[[], bool], max_rate: float
) -> str | None:
    """One probe (the process is up once it answered), then 2 s at a quarter of the rate."""
    produce_backlog(env.bootstrap, source, feed.take(1))
    _n, why = wait_count(env.bootstrap, target, 1, 120, alive=alive)
    if why is not None:
        return f"no answer to a probe: {why}"
    items = feed.take(int(max_rate * 0.25 * 2))
    produce_paced(env.bootstrap, source, items, max_rate * 0.25)
    _n, why = wait_count(env.bootstrap, target, 1 + len(items), 120, alive=alive)
    return why


def latency_floor(
    env: Env,
    feed: Feed,
    max_rate: float,
    fractions: tuple[float, ...],
    seconds: float,
    name: str = "floor",
) -> LatencyRun:
    """The Kafka path alone at the same offered rates, measured the same way: ``passthrough.py``
    (serve's consumer and producer settings, no work) stamps each copy with the time it had
    the record, as serve stamps a decision with ``scored_at``."""
    source = env.topics.create(f"{name}-in", PARTITIONS)
    target = env.topics.create(f"{name}-out", PARTITIONS)
    log = env.workdir / f"{name}.log"
    run = LatencyRun()
    group = f"bench-{env.topics.run_id}-{name}"
    args = [sys.executable, str(HERE / "passthrough.py"), env.bootstrap, source, target, group]
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, cwd=env.workdir, stdout=sink, stderr=subprocess.STDOUT)
    phases, run.failed = _paced_run(
        env, feed, proc, log, source, target, max_rate, fractions, seconds
    )
    if run.failed is not None:
        return run
    sent = _stamps(read_all(env.bootstrap, source))
    copied = _stamps(read_all(env.bootstrap, target))
    for label, offered, items in phases:
        ids = [i for i in _ids(items) if i in sent and i in copied]
        if len(ids) != len(items):
            run.failed = f"{label}: {len(ids)} copies for {len(items)} inputs"
            return run
        lat = np.sort([copied[i] - sent[i] for i in ids]).astype(float)
        run.samples[label] = lat
        run.rows.append(_latency_row(label, offered, lat))
    return run


def _stamps(records: list[Record]) -> dict[str, int]:
    """Transaction id -> Kafka timestamp of the record that carries it."""
    return {str(orjson.loads(r.value)["transaction_id"]): r.timestamp_ms for r in records}


def _latency_row(label: str, offered: float, lat: np.ndarray) -> dict[str, Any]:
    """The figures of one offered rate from its sorted latencies (ms)."""

    def pct(q: float) -> float:
        return round(float(np.percentile(lat, q)), 2)

    return {
        "share_of_max": label,
        "offered_rate": round(offered, 1),
        "count": len(lat),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": float(lat[-1]),
    }


def _summarise(
    run: LatencyRun,
    phases: list[Phase],
    inputs: list[Record],
    out: list[Record],
) -> None:
    sent = _stamps(inputs)
    decided: dict[str, tuple[int, dict[str, Any]]] = {}
    keep = ("deadline_met", "degraded", "latency_ms", "scored_at")
    for r in out:
        d = orjson.loads(r.value)
        decided[str(d["transaction_id"])] = (r.timestamp_ms, {k: d.get(k) for k in keep})
    for label, offered, items in phases:
        ids = _ids(items)
        got = [decided[i] for i in ids if i in decided and i in sent]
        if len(got) != len(ids) or len(out) != len(inputs):
            run.failed = f"{label}: {len(got)} decisions for {len(ids)} inputs"
            return
        lat = np.sort([ts - sent[i] for i, (ts, _d) in zip(ids, got, strict=True)])
        decisions = [d for _ts, d in got]
        total = np.asarray([d["latency_ms"]["total"] for d in decisions], dtype=float)
        run.samples[label] = lat.astype(float)
        run.rows.append(_row(label, offered, lat, total, decisions))


def _row(
    label: str,
    offered: float,
    lat: np.ndarray,
    total: np.ndarray,
    decisions: list[dict[str, Any]],
) -> dict[str, Any]:
    def pct(a: np.ndarray, q: float) -> float:
        return round(float(np.percentile(a, q)), 2)

    ladder = _ladder(decisions)
    stages = sorted({k for d in decisions for k in d["latency_ms"] if k != "total"})
    # records of one micro-batch share scored_at and every per-batch stage time
    batches = len(
        {
            (
                d["scored_at"],
                *(v for k, v in d["latency_ms"].items() if k not in ("total", "queue", "kafka")),
            )
            for d in decisions
        }
    )
    return {
        **_latency_row(label, offered, lat),
        "deadline_met": ladder["deadline_met"],
        "degraded": ladder["degraded"],
        "serve_total_p99_ms": pct(total, 99),
        "stage_p50_ms": {
            k: pct(np.asarray([d["latency_ms"].get(k, 0.0) for d in decisions]), 50) for k in stages
        },
        "mean_batch_approx": round(len(decisions) / max(batches, 1), 1),
        "tail_p50_ms": _tail(lat, decisions, stages),
    }


def _tail(lat: np.ndarray, decisions: list[dict[str, Any]], stages: list[str]) -> dict[str, float]:
    """Median of each latency part over the slowest 1% of decisions (where the tail goes).
    ``lat`` is sorted; the decisions are matched by their own total."""
    cut = float(np.percentile(lat, 99))
    slow = [d["latency_ms"] for d in decisions if d["latency_ms"]["total"] >= cut]
    if not slow:
        return {}
    return {
        k: round(float(np.median([s.get(k, 0.0) for s in slow])), 2) for k in ["total", *stages]
    }


def scale(
    env: Env,
    feed: Feed,
    n_chunk: int,
    paced_rate: float,
    seconds: float,
    budget_ms: float,
    name: str = "scale",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One process drains a chunk; a second joins under paced load (the rebalance pause);
    both drain a second chunk; the second leaves and the first drains a third alone. The
    ratio is the two processes' rate over the mean of the one-process phases on either side
    of it: this VM's speed drifts within minutes, and a drift between the phases would
    otherwise read as scaling (or its lack). ``offline_exact``: as the drains'."""
    input_topic = env.topics.create(f"{name}-in", PARTITIONS)
    spec = _spec(env, name, input_topic, budget_ms, extra=extra)
    logs = [env.workdir / f"{name}-a.log", env.workdir / f"{name}-b.log"]
    procs = [start(spec, logs[0])]
    expected = 0

    def alive() -> bool:
        return all(p.poll() is None for p in procs)

    try:
        if wait_assignment(env.topics.admin, spec.group, 1, PARTITIONS, 120) is None:
            return {"failed": f"first process never held the partitions: {tail(logs[0], 600)!r}"}
        chunk1 = feed.take(n_chunk)
        produce_backlog(env.bootstrap, input_topic, chunk1)
        expected += len(chunk1)
        paced = feed.take(int(paced_rate * seconds))
        join = _Join(env, spec, logs[1], procs, start_at=seconds * 0.25)
        produce_paced(env.bootstrap, input_topic, paced, paced_rate, on_progress=join.maybe)
        expected += len(paced)
        joined_s = wait_assignment(env.topics.admin, spec.group, 2, PARTITIONS, 120)
        if joined_s is None or join.started_ms is None:
            return {"failed": f"second process never joined: {tail(logs[1], 600)!r}"}
        chunk2 = feed.take(n_chunk)
        produce_backlog(env.bootstrap, input_topic, chunk2)
        expected += len(chunk2)
        _n, why = wait_count(env.bootstrap, spec.decisions, expected, 600, alive=alive)
        if why is None:
            stop(procs.pop())  # leaves the group: the first process takes every partition
            if wait_assignment(env.topics.admin, spec.group, 1, PARTITIONS, 120) is None:
                return {"failed": f"the group never went back to one: {tail(logs[0], 600)!r}"}
            chunk3 = feed.take(n_chunk)
            produce_backlog(env.bootstrap, input_topic, chunk3)
            expected += len(chunk3)
            _n, why = wait_count(env.bootstrap, spec.decisions, expected, 600, alive=alive)
    finally:
        for p in procs:
            stop(p)
    if why is not None:
        return {"failed": f"{why}; logs: {tail(logs[0], 300)!r} {tail(logs[1], 300)!r}"}
    inputs = read_all(env.bootstrap, input_topic)
    out = read_all(env.bootstrap, spec.decisions)
    chunks = (chunk1, paced, chunk2, chunk3)
    figures = _scale_figures(inputs, out, chunks, join.started_ms)
    if not figures.get("failed"):
        backlog = [item for chunk in chunks for item in chunk]
        figures["offline_exact"] = exact_share(backlog, _decoded(out), env.model.booster)
    return figures


class _Join:
    """Starts the second process once the paced producer is ``start_at`` seconds in."""

    def __init__(
        self, env: Env, spec: ServeSpec, log: Path, procs: list[Any], start_at: float
    ) -> None:
        self.spec, self.log, self.procs, self.start_at = spec, log, procs, start_at
        self.started_ms: int | None = None

    def maybe(self, elapsed: float) -> None:
        if self.started_ms is None and elapsed >= self.start_at:
            self.started_ms = int(time.time() * 1000)
            self.procs.append(start(self.spec, self.log))


def _scale_figures(
    inputs: list[Record], out: list[Record], chunks: tuple[list[Item], ...], join_ms: int
) -> dict[str, Any]:
    part = {str(orjson.loads(r.value)["transaction_id"]): r.partition for r in inputs}
    ts: dict[str, int] = {}
    for r in out:
        ts[str(orjson.loads(r.value)["transaction_id"])] = r.timestamp_ms
    n_in = sum(len(c) for c in chunks)
    if len(out) != n_in or len(ts) != n_in or len(inputs) != n_in:
        return {"failed": f"{len(out)} decisions ({len(ts)} distinct) for {n_in} inputs"}
    one, two, one_after = (
        rate([Record(ts[i], 0, b"") for i in _ids(c)]) for c in (chunks[0], *chunks[2:])
    )
    paced_ids = _ids(chunks[1])
    rungs = Counter(str(orjson.loads(r.value).get("degraded") or "full") for r in out)
    return {
        "partitions": PARTITIONS,
        "chunk": len(chunks[0]),
        "one_process_tx_per_s": one,
        "two_processes_tx_per_s": two,
        "one_process_after_tx_per_s": one_after,
        "ratio": round(2 * two / (one + one_after), 3) if one and two and one_after else None,
        "ratio_before": round(two / one, 3) if one and two else None,
        "ratio_after": round(two / one_after, 3) if one_after and two else None,
        "degraded": dict(rungs),
        **_pauses([ts[i] for i in paced_ids], [part[i] for i in paced_ids], join_ms),
    }


def _pauses(paced_ts: list[int], partitions: list[int], join_ms: int) -> dict[str, Any]:
    """Largest gap between consecutive decisions after the join, overall and per input
    partition, against the largest gap before it."""
    order = np.argsort(paced_ts, kind="stable")
    t = np.asarray(paced_ts, dtype=np.int64)[order]
    p = np.asarray(partitions)[order]
    gaps, ends = np.diff(t), t[1:]
    after = ends >= join_ms
    per_partition = {}
    for q in np.unique(p):
        tq = t[p == q]
        gq = np.diff(tq)
        sel = tq[1:] >= join_ms
        per_partition[int(q)] = int(gq[sel].max()) if sel.any() else 0
    return {
        "rebalance_pause_ms": int(gaps[after].max()) if after.any() else None,
        "gap_before_join_ms": int(gaps[~after].max()) if (~after).any() else None,
        "partition_pause_ms": max(per_partition.values()) if per_partition else None,
        "partition_pause_by_partition_ms": per_partition,
    }
