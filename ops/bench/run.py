"""The side-by-side bench of issue 8: fraudstream serve against Kafka's pass-through ceiling,
the naive per-message loop and a faust agent, plus latency, scale-out and scorer figures, in
one run on one simulated input, with the broker and Redis on this machine.

    .venv/bin/python ops/bench/run.py --bootstrap 127.0.0.1:9092 \\
        --redis-url redis://127.0.0.1:6379/0 [--quick] [--n 200000] [--arms ceiling,naive,...]

Writes bench/results.json, bench/results.md, bench/throughput.png, bench/latency_cdf.png.
Topics (``bench-<run>-*``), consumer groups and Redis prefixes are per run and deleted at
the end; the model is trained once and promoted in bench/tmp/registry.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import pstats
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import arms
import eos_arm
import label_worker
import machine
import plots
import report
import scoring_arm
import serve_arms
from broker import Topics, delete_groups, produce_backlog
from workload import Feed, train_and_register

from fraudstream.features.redis_store import RedisStore

ROOT = Path(__file__).resolve().parents[2]
ALL_ARMS = (
    "ceiling",
    "fraudstream",
    "fraudstream_local",
    "alignment",
    "fraudstream_50ms",
    "naive",
    "faust",
    "latency",
    "latency_local",
    "exactly_once",
    "scale",
    "scoring",
    "labels",
)
FULL_PATH_BUDGET_MS = 60_000.0
"""The headline serve arm's budget (serve's largest): no record of the backlog gets late, so
every one takes the full path, the same work as the naive and faust arms."""


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    workdir = args.out / "tmp" / f"run-{run_id}"
    workdir.mkdir(parents=True, exist_ok=True)
    topics = Topics(args.bootstrap, run_id)
    results: dict[str, Any] = _header(args)
    env = None
    try:
        env, feed = _prepare(args, topics, workdir)
        _run_arms(args, env, feed, results)
    finally:
        _clean(topics, env, args)
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    _finish(results, args.out)
    _say(f"done in {results['duration_s']:.0f} s: {args.out / 'results.md'}")
    return 0 if not results["failures"] else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--quick", action="store_true", help="about 20,000 transactions, < 3 min")
    p.add_argument("--n", type=int, help="backlog size (default 200,000; quick 20,000)")
    p.add_argument(
        "--slow-n", type=int, help="backlog of naive and faust (default 20,000; quick 3,000)"
    )
    p.add_argument("--arms", default=",".join(ALL_ARMS), help="comma list of arms")
    p.add_argument("--latency-s", type=float, help="seconds per offered rate (20; quick 5)")
    p.add_argument("--fractions", default="0.25,0.5,0.75", help="offered rates, share of max")
    p.add_argument("--max-rate", type=float, help="latency arm's 100%% when fraudstream is not run")
    p.add_argument("--profile", action="store_true", help="extra serve run under cProfile")
    p.add_argument("--note", default="", help="said under the machine line (e.g. the load)")
    p.add_argument("--out", type=Path, default=ROOT / "bench")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    args.n = args.n or (20_000 if args.quick else 200_000)
    args.slow_n = min(args.n, args.slow_n or (3_000 if args.quick else 20_000))
    args.latency_s = args.latency_s or (5.0 if args.quick else 20.0)
    args.fractions = tuple(float(f) for f in args.fractions.split(","))
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(args.arms) - set(ALL_ARMS))
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {', '.join(ALL_ARMS)}")
    return args


def _header(args: argparse.Namespace) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {
        "command": "make bench-quick" if args.quick else "make bench",
        "argv": sys.argv[1:],
        "started_at": now,
        "git_commit": machine.git_commit(),
        "load_note": args.note,
        "n": args.n,
        "slow_n": args.slow_n,
        "machine": machine.describe(args.redis_url),
        "arms": {},
        "throughput": {},
        "failures": [],
        "notes": [],
    }


def _say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _prepare(args: argparse.Namespace, topics: Topics, workdir: Path) -> tuple[arms.Env, Feed]:
    t0 = time.monotonic()
    feed = Feed(args.n)
    model = train_and_register(args.out / "tmp" / "registry")
    _say(f"input simulated and model {model.version} trained in {time.monotonic() - t0:.1f} s")
    input_topic = topics.create("in", serve_arms.PARTITIONS)
    took = produce_backlog(args.bootstrap, input_topic, feed.backlog())
    _say(f"backlog of {args.n:,} produced to {input_topic} in {took:.1f} s")
    env = arms.Env(args.bootstrap, args.redis_url, topics, input_topic, args.n, model, workdir)
    return env, feed


def _slow_env(env: arms.Env, feed: Feed, n: int) -> arms.Env:
    """naive and faust read the first ``n`` of the same backlog from their own topic."""
    if n == env.n:
        return env
    topic = env.topics.create(f"in-first-{n}", serve_arms.PARTITIONS)
    produce_backlog(env.bootstrap, topic, feed.backlog()[:n])
    return dataclasses.replace(env, input_topic=topic, n=n)


def _run_arms(args: argparse.Namespace, env: arms.Env, feed: Feed, results: dict[str, Any]) -> None:
    slow: list[arms.Env] = []

    def slow_env() -> arms.Env:
        if not slow:
            slow.append(_slow_env(env, feed, args.slow_n))
        return slow[0]

    steps: dict[str, Callable[[], None]] = {
        "ceiling": lambda: _record(results, arms.ceiling(env)),
        "fraudstream": lambda: _record(
            results, serve_arms.fraudstream(env, "fraudstream", FULL_PATH_BUDGET_MS, feed.backlog())
        ),
        "fraudstream_local": lambda: _record(
            results,
            serve_arms.fraudstream(
                env,
                "fraudstream_local",
                FULL_PATH_BUDGET_MS,
                feed.backlog(),
                extra=("--customer-state", "local"),
            ),
        ),
        "alignment": lambda: _alignment(env, feed, results),
        "fraudstream_50ms": lambda: _record(
            results,
            serve_arms.fraudstream(env, "fraudstream_50ms", serve_arms.BUDGET_MS, feed.backlog()),
        ),
        "naive": lambda: _record(results, arms.naive(slow_env())),
        "faust": lambda: _record(results, arms.faust(slow_env())),
        "latency": lambda: _latency(args, env, feed, results),
        "latency_local": lambda: _latency_local(args, env, feed, results),
        "exactly_once": lambda: _exactly_once(args, env, feed, results),
        "scale": lambda: _scale(args, env, feed, results),
        "scoring": lambda: _scoring(args, env, results),
        "labels": lambda: _labels(args, results),
    }
    for name in ALL_ARMS:
        if name in args.arms:
            _step(name, steps[name], results)
    if args.profile:
        _step("profile", lambda: _profile(args, env, feed, results), results)


def _step(name: str, run: Callable[[], None], results: dict[str, Any]) -> None:
    t0 = time.monotonic()
    _say(f"{name}: start")
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - one broken arm must not lose the others
        traceback.print_exc()
        results["failures"].append(f"{name}: {type(exc).__name__}: {exc}")
    _say(f"{name}: {time.monotonic() - t0:.1f} s")


def _record(results: dict[str, Any], arm: arms.ArmResult) -> None:
    results["arms"][arm.name] = arm.as_dict()
    if arm.failed is not None:
        results["failures"].append(f"{arm.name}: {arm.failed}")
        _say(f"{arm.name}: FAILED: {arm.failed}")
    else:
        _say(f"{arm.name}: {arm.outputs:,} outputs, {arm.tx_per_s:,.0f} tx/s")
    if arm.name in ("ceiling", "fraudstream", "naive", "faust"):
        results["throughput"][arm.name] = arm.tx_per_s


ALIGNMENT_ROUNDS = ((True, False), (False, True))
"""Drains with partitions aligned and not, alternated (A B, B A) so that a drift of the
machine's speed does not read as a difference between them."""


def _alignment(env: arms.Env, feed: Feed, results: dict[str, Any]) -> None:
    """The fraudstream_local drain with the partitions taken in timestamp order (serve's
    default) and without (``--no-align-partitions``), side by side."""
    rounds = []
    for i, order in enumerate(ALIGNMENT_ROUNDS, start=1):
        for aligned in order:
            name = f"{'aligned' if aligned else 'unaligned'}_{i}"
            extra: tuple[str, ...] = ("--customer-state", "local")
            if not aligned:
                extra += ("--no-align-partitions",)
            arm = serve_arms.fraudstream(
                env, name, FULL_PATH_BUDGET_MS, feed.backlog(), extra=extra
            )
            if arm.failed is not None:
                results["failures"].append(f"alignment {name}: {arm.failed}")
            row = {"round": i, "aligned": aligned, **arm.as_dict()}
            rounds.append(row)
            _say(
                f"{name}: {arm.tx_per_s} tx/s, Redis {row.get('redis_cpu_us_per_tx')} µs/tx,"
                f" offline-exact {row.get('offline_exact_share')}"
            )
    results["alignment"] = {"rounds": rounds}


def _latency(args: argparse.Namespace, env: arms.Env, feed: Feed, results: dict[str, Any]) -> None:
    max_rate = results["throughput"].get("fraudstream") or args.max_rate
    if not max_rate:
        results["failures"].append("latency: no maximum rate (run fraudstream or --max-rate)")
        return
    floor = serve_arms.latency_floor(env, feed, max_rate, args.fractions, args.latency_s)
    results["latency_floor"] = floor.rows
    if floor.failed:
        results["failures"].append(f"latency floor: {floor.failed}")
    for row in floor.rows:
        _say(
            f"kafka path alone {row['share_of_max']} ({row['offered_rate']:,.0f}/s): p50"
            f" {row['p50_ms']} p99 {row['p99_ms']} p99.9 {row['p999_ms']} ms"
        )
    run = serve_arms.latency(env, feed, max_rate, args.fractions, args.latency_s)
    results["latency"] = run.rows
    results["latency_max_rate"] = max_rate
    if run.failed:
        results["latency_failed"] = run.failed
        results["failures"].append(f"latency: {run.failed}")
    if run.samples:
        rates = {r["share_of_max"]: r["offered_rate"] for r in run.rows}
        plots.latency_cdf(
            run.samples, rates, serve_arms.BUDGET_MS, args.out / "latency_cdf.png", floor.samples
        )
    for row in run.rows:
        _say(
            f"latency {row['share_of_max']} ({row['offered_rate']:,.0f}/s): p50 {row['p50_ms']}"
            f" p99 {row['p99_ms']} p99.9 {row['p999_ms']} ms, met {row['deadline_met']:.2%}"
        )


def _exactly_once(
    args: argparse.Namespace, env: arms.Env, feed: Feed, results: dict[str, Any]
) -> None:
    figures: dict[str, Any] = eos_arm.compare(env, feed, args.latency_s)
    figures["drain"] = eos_arm.drains(env, feed.backlog())
    figures["recovery"] = eos_arm.recovery(env, feed)
    results["exactly_once"] = figures
    for guarantee, mode in figures["modes"].items():
        if mode.get("failed"):
            results["failures"].append(f"exactly_once {guarantee}: {mode['failed']}")
            continue
        for row in mode["rows"]:
            _say(
                f"{guarantee} {row['offered_rate']:,.0f}/s: visible p50 {row['visible_p50_ms']}"
                f" p99 {row['visible_p99_ms']} ms, full rung {row['full_rung_share']:.2%}"
            )
    for guarantee, arm in figures["drain"].items():
        _say(f"{guarantee} drain: {arm['tx_per_s']} tx/s, rungs {arm.get('degraded')}")
        if arm.get("failed"):
            results["failures"].append(f"exactly_once drain {guarantee}: {arm['failed']}")
    rec = figures["recovery"]
    if rec.get("failed"):
        results["failures"].append(f"exactly_once recovery: {rec['failed']}")
    else:
        _say(f"recovery after SIGKILL: {rec['restart_to_first_commit_s']} s to the first commit")


def _scale(args: argparse.Namespace, env: arms.Env, feed: Feed, results: dict[str, Any]) -> None:
    max_rate = results["throughput"].get("fraudstream") or args.max_rate or 2_000.0
    seconds = 8.0 if args.quick else 20.0
    figures = serve_arms.scale(env, feed, args.n, 0.4 * max_rate, seconds, FULL_PATH_BUDGET_MS)
    figures["budget_ms"] = FULL_PATH_BUDGET_MS
    figures["paced_rate"] = round(0.4 * max_rate, 1)
    figures["cores"] = results["machine"]["cores"]
    results["scale"] = figures
    if figures.get("failed"):
        results["failures"].append(f"scale: {figures['failed']}")
    else:
        _say(
            f"scale: one {figures['one_process_tx_per_s']}/s, two "
            f"{figures['two_processes_tx_per_s']}/s, one again "
            f"{figures['one_process_after_tx_per_s']}/s, pause {figures['rebalance_pause_ms']} ms"
        )


def _scoring(args: argparse.Namespace, env: arms.Env, results: dict[str, Any]) -> None:
    budget_s = 0.3 if args.quick else 1.0
    out = env.workdir / "scoring.json"
    results["scoring"] = scoring_arm.scoring(env.model, out, budget_s)


LABEL_DECISIONS = 20_000
"""Decisions of the label worker arm (5,000 with --quick)."""


def _labels(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The label worker's CPU per decision it folds into the KPIs (ops/bench/label_worker.py):
    every decision serve writes costs this too, on whichever machine runs the worker."""
    n = LABEL_DECISIONS // 4 if args.quick else LABEL_DECISIONS
    run = label_worker.measure(args.bootstrap, args.redis_url, n)
    results["labels"] = {"decisions": n, **run}
    _say(f"labels: {run['us_per_decision']:.0f} µs of the worker's CPU per decision")


def _profile(args: argparse.Namespace, env: arms.Env, feed: Feed, results: dict[str, Any]) -> None:
    """serve under cProfile, draining the backlog and then at a quarter of the maximum
    rate (figures kept apart from the headline ones): the tops go to bench/profile.txt."""
    drain, paced = env.workdir / "serve-drain.prof", env.workdir / "serve-paced.prof"
    arm = serve_arms.fraudstream(
        env, "fraudstream_profiled", FULL_PATH_BUDGET_MS, feed.backlog(), profile=drain
    )
    max_rate = results["throughput"].get("fraudstream") or args.max_rate or 2_000.0
    run = serve_arms.latency(
        env, feed, max_rate, (0.25,), args.latency_s, "latency_profiled", profile=paced
    )
    results["profile"] = {"drain": arm.as_dict(), "paced": run.rows, "failed": run.failed}
    with (args.out / "profile.txt").open("w", encoding="utf-8") as sink:
        sink.write(
            f"{results['started_at']}, commit {results['git_commit']}, backlog {env.n:,},"
            f" {results['machine']['cores']} cores, 1-min load {os.getloadavg()[0]:.2f}.\n"
            f"drain: {arm.tx_per_s} tx/s under cProfile; paced: {run.rows}\n"
        )
        for title, path in (("draining the backlog", drain), ("paced at 25% of max", paced)):
            sink.write(f"\n===== fraudstream serve under cProfile, {title} =====\n")
            stats = pstats.Stats(str(path), stream=sink)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(35)


def _clean(topics: Topics, env: arms.Env | None, args: argparse.Namespace) -> None:
    prefix = f"bench-{topics.run_id}-"
    try:
        topics.delete_all(extra_prefixes=[prefix])
        delete_groups(topics.admin, prefix)
    except Exception as exc:  # noqa: BLE001 - report, the figures are still worth writing
        _say(f"cleanup of topics/groups {prefix}* failed: {exc}")
    for p in env.prefixes if env else []:
        # millions of keys after a full run: a slow moment of Redis must not lose the figures
        store = RedisStore.from_url(args.redis_url, prefix=p, socket_timeout_s=60.0)
        try:
            store.drop()
        except Exception as exc:  # noqa: BLE001 - report, the figures are still worth writing
            _say(f"cleanup of Redis prefix {p} failed: {exc}")
        finally:
            store.close()


def _finish(results: dict[str, Any], out: Path) -> None:
    results["ratios"] = report.ratios(results["throughput"])
    results["targets"] = report.targets(results)
    results["notes"] += _notes(results)
    if any(results["throughput"].values()):
        title = (
            f"one run, {results['machine']['cores']} cores: backlog of {results['n']:,}"
            f" (naive and faust: its first {results['slow_n']:,})"
        )
        plots.throughput(results["throughput"], title, out / "throughput.png")
    report.write(results, out)


PER_RECORD = ("queue", "kafka")
"""Per-record parts of a decision's latency_ms (the other stages are per batch)."""


def _latency_local(
    args: argparse.Namespace, env: arms.Env, feed: Feed, results: dict[str, Any]
) -> None:
    """Serve with ``--customer-state local`` paced at half its own drain rate (issue 23)."""
    max_rate = (results["arms"].get("fraudstream_local") or {}).get("tx_per_s")
    if not max_rate:
        results["failures"].append("latency_local: no drain rate (run fraudstream_local)")
        return
    run = serve_arms.latency(
        env,
        feed,
        max_rate,
        (0.5,),
        args.latency_s,
        "latency_local",
        extra=("--customer-state", "local"),
    )
    results["latency_local"] = run.rows
    if run.failed:
        results["failures"].append(f"latency_local: {run.failed}")
    for row in run.rows:
        _say(
            f"local state at {row['share_of_max']} ({row['offered_rate']:,.0f}/s): p99"
            f" {row['p99_ms']} ms, full rung {row.get('full_rung_share')}"
        )


def _latency_notes(results: dict[str, Any]) -> list[str]:
    """Where the paced latency goes, from the decisions' own per-stage times."""
    notes = []
    for row in results.get("latency") or []:
        stages = row.get("stage_p50_ms") or {}
        work = sum(v for k, v in stages.items() if k not in PER_RECORD)
        notes.append(
            f"At {row['share_of_max']} of max: median {stages.get('queue', 0):g} ms waiting"
            f" before the batch starts (of which {stages.get('kafka', 0):g} ms until the"
            f" consumer had the record) against {work:.2f} ms in the stages, micro-batches of"
            f" about {row.get('mean_batch_approx')} records,"
            f" {1 - (row['deadline_met'] or 0):.1%} of deadlines missed."
        )
        tail = row.get("tail_p50_ms") or {}
        if tail:
            tail_work = sum(v for k, v in tail.items() if k not in (*PER_RECORD, "total"))
            notes.append(
                f"  its slowest 1% (total {tail.get('total', 0):g} ms, median): kafka"
                f" {tail.get('kafka', 0):g} ms, waiting in serve"
                f" {tail.get('queue', 0) - tail.get('kafka', 0):g} ms, stages {tail_work:.2f} ms"
            )
    if notes and (ROOT / "bench" / "profile.txt").exists():
        notes.append("bench/profile.txt: serve under cProfile (ops/bench/run.py --profile).")
    return notes


def _notes(results: dict[str, Any]) -> list[str]:
    notes = [
        "Throughput = (outputs - 1) / (last - first output timestamp), the output topics"
        " stamped with the broker's append time; startup is excluded.",
        "fraudstream's headline arm runs serve with its largest budget (60 s), so no backlog"
        " record is late and every one takes the full path (features from Redis, full"
        " model), the same work as naive and faust. fraudstream_50ms drains the same"
        " backlog at the default 50 ms budget: every backlog record is late on arrival, and"
        " late anyway it keeps the full path (the ladder steps down only to save a deadline).",
        f"naive and faust read the first {results['slow_n']:,} transactions of the same"
        " backlog from a topic of their own (--slow-n): their per-message rate is steady, and"
        " the whole backlog would keep them busy for tens of minutes.",
        "The latency and scale arms' producers run in the bench process on the same cores.",
    ]
    ceiling = results["arms"].get("ceiling") or {}
    if ceiling.get("runs_tx_per_s"):
        runs = ", ".join(f"{v:,.0f}" for v in ceiling["runs_tx_per_s"])
        notes.append(
            f"ceiling: the median of {len(ceiling['runs_tx_per_s'])} passes over the backlog"
            f" ({runs} tx/s), its consumer fetching again"
            f" {ceiling['fetch_queue_backoff_ms']} ms after its local queue filled"
            " (`fetch.queue.backoff.ms`; librdkafka's default, 1 s, held most passes at"
            " about 107,000/s before 2026-12-05, ops/bench/arms.py)."
        )
    notes += _latency_notes(results)
    scale = results.get("scale") or {}
    if scale.get("ratio") is not None and results["machine"]["cores"] < 4:
        notes.append(
            f"Scale: two processes gave {scale['ratio']:.2f}x one (the mean of the one-process"
            f" phases before and after) on {results['machine']['cores']} cores that also run"
            " Kafka, Redis and the bench's producer; a fair test of the 1.6x target needs more"
            " cores than this machine has."
        )
    return notes


if __name__ == "__main__":
    sys.exit(main())
