"""Redis CPU per transaction of two or more versions of the feature store, side by side.

    .venv/bin/python ops/bench/store_ab.py --arm set2=1259431 --arm set4=HEAD \
        [--local NAME] [--batches 300] [--batch-size 512] [--shared-redis] [--json FILE]

An arm is NAME=TREE: a directory holding a checkout (its ``fraudstream`` package is
imported from there, in the arm's own process) or a git revision of this repository
(checked out into a temporary worktree, removed after). Each arm runs against its own
redis-server (``--shared-redis``: one for all) and first loads the same 35 days of the
quick simulated dataset (60 days, as ``features_bench.py --quick``), untimed. Then the
arms apply the following batches in lockstep, one arm at a time, in alternating order (A B,
B A, ...), and each batch's Redis CPU (``INFO cpu``, user + system) is charged to the arm
that ran it, and the arm's own process CPU in the store call (the client's share: with
``--local NAME``, arm NAME runs ``LocalStore``, whose customer half is computed there).

Separate runs of ``features_bench.py`` on this shared VM drift by more than the designs
differ (the same tree measured 1.16 to 1.26 times another one session to session); batch
by batch, both arms see the same machine at the same time, and the ratio of their totals
comes with a bootstrap interval over the batches. The first arm is the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

import numpy as np
import redis

from fraudstream.features.definitions import MS_PER_DAY
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.replay import replay
from fraudstream.features.simulator import SimulatorConfig, simulate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

# a script beside this one; in an arm's process it imports that arm's fraudstream
from features_bench import WARM_DAYS, _batches, _machine, _redis, _server_cpu_s  # noqa: E402
from trees import arm_tree, parse_arm  # noqa: E402

BOOTSTRAP = 2_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arm", action="append", required=True, help="NAME=TREE or NAME=REVISION")
    p.add_argument("--batches", type=int, default=300, help="timed batches per arm")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--shared-redis", action="store_true", help="one redis-server for all arms")
    p.add_argument(
        "--local", action="append", default=[], help="this arm runs LocalStore (repeatable)"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--serve-arm", nargs=3, metavar=("URL", "SIZE", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_arm:
        return _serve_arm(args.serve_arm[0], int(args.serve_arm[1]), args.serve_arm[2])
    if len(args.arm) < 2:
        p.error("give at least two --arm")
    if args.batches < 10 or args.batch_size < 1:
        p.error("--batches must be at least 10 and --batch-size at least 1")
    arms = [parse_arm(p, spec) for spec in args.arm]
    unknown = set(args.local) - {name for name, _ in arms}
    if unknown:
        p.error(f"--local names no --arm: {', '.join(sorted(unknown))}")
    kinds = ["local" if name in args.local else "redis" for name, _ in arms]
    with contextlib.ExitStack() as stack:
        trees = [stack.enter_context(arm_tree(where)) for _, where in arms]
        servers = 1 if args.shared_redis else len(arms)
        urls = [stack.enter_context(_redis(None)) for _ in range(servers)]
        if args.shared_redis:
            urls *= len(arms)
        us, client = _lockstep(trees, urls, kinds, args.batches, args.batch_size)
    results = _report([name for name, _ in arms], us, client)
    if args.json:
        results |= {
            "arms": dict(arms),
            "local": list(args.local),
            "batch_size": args.batch_size,
            "shared_redis": args.shared_redis,
            "machine": _machine(),
        }
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _lockstep(
    trees: list[Path], urls: list[str], kinds: list[str], batches: int, size: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Redis CPU and the arm's own CPU, µs per transaction of each arm's batches, arms
    taking turns."""
    me = Path(__file__).resolve()
    procs = []
    for tree, url, kind in zip(trees, urls, kinds, strict=True):
        env = dict(os.environ, PYTHONPATH=str(tree))
        cmd = [sys.executable, str(me), "--arm", "x=x", "--serve-arm", url, str(size), kind]
        procs.append(
            subprocess.Popen(
                cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        )
    probes = [redis.Redis.from_url(url) for url in urls]
    try:
        ready = [_read(proc, "warm-up") for proc in procs]
        available = min(int(line.split()[1]) for line in ready)
        if available < batches:
            print(f"only {available} batches after the warm-up; timing {available}")
            batches = available
        us: list[list[float]] = [[] for _ in procs]
        client: list[list[float]] = [[] for _ in procs]
        for b in range(batches):
            order = range(len(procs)) if b % 2 == 0 else reversed(range(len(procs)))
            for k in order:
                before = _server_cpu_s(probes[k])
                _send(procs[k], str(b))
                count, own = _read(procs[k], f"batch {b}").split()
                us[k].append((_server_cpu_s(probes[k]) - before) / int(count) * 1e6)
                client[k].append(float(own) / int(count) * 1e6)
        for proc in procs:
            _send(proc, "stop")
            proc.wait(timeout=120)
        return [np.asarray(u) for u in us], [np.asarray(c) for c in client]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for probe in probes:
            probe.close()


def _send(proc: subprocess.Popen[str], line: str) -> None:
    stdin: IO[str] | None = proc.stdin
    assert stdin is not None
    stdin.write(line + "\n")
    stdin.flush()


def _read(proc: subprocess.Popen[str], what: str) -> str:
    stdout: IO[str] | None = proc.stdout
    assert stdout is not None
    line = stdout.readline()
    if not line:
        sys.exit(f"error: an arm's process ended during {what} (exit {proc.wait()})")
    return line


def _report(
    names: list[str], us: list[np.ndarray], client: list[np.ndarray] | None = None
) -> dict[str, object]:
    n = len(us[0])
    idx = np.random.default_rng(0).integers(0, n, (BOOTSTRAP, n))
    arms = {}
    client = client or [np.full(n, np.nan) for _ in us]
    for name, u, c in zip(names, us, client, strict=True):
        arms[name] = {
            "redis_cpu_us_per_tx": round(float(u.mean()), 2),
            "client_cpu_us_per_tx": round(float(c.mean()), 2),
            "batches": n,
        }
        print(
            f"{name:<16} Redis CPU {u.mean():6.2f} µs/tx (median batch {np.median(u):.2f}),"
            f" client CPU {c.mean():6.2f} µs/tx"
        )
    ratios = {}
    ref = us[0]
    for name, u in zip(names[1:], us[1:], strict=True):
        boot = u[idx].sum(axis=1) / ref[idx].sum(axis=1)
        low, high = np.percentile(boot, [2.5, 97.5])
        ratio = float(u.sum() / ref.sum())
        ratios[f"{name}/{names[0]}"] = {
            "ratio": round(ratio, 3),
            "ci95": [round(float(low), 3), round(float(high), 3)],
        }
        print(
            f"{name}/{names[0]}: {ratio:.3f} (95 % interval {low:.3f} to {high:.3f}, {n} batches)"
        )
    return {"arms_cpu": arms, "ratios": ratios}


def _serve_arm(url: str, size: int, kind: str) -> int:
    """One arm's process: warm a fresh prefix, then apply batch i whenever asked; answers
    the batch's size and this process's CPU seconds in the call."""
    df = simulate(SimulatorConfig(n_days=60))
    prefix = f"ab-{uuid.uuid4().hex[:8]}"
    store: Any
    if kind == "local":
        from fraudstream.features.local_store import LocalStore  # the arm's tree has it

        store = LocalStore.from_url(url, prefix=prefix, socket_timeout_s=120)
    else:
        store = RedisStore.from_url(url, prefix=prefix, socket_timeout_s=120)
    times = df["event_time_ms"]
    warm_end = int(np.searchsorted(times, times.iloc[0] + WARM_DAYS * MS_PER_DAY))
    replay(store, df.iloc[:warm_end], batch_size=512)
    batches = _batches(df.iloc[warm_end:], size)
    print(f"ready {len(batches)}", flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            break
        batch = batches[int(line)]
        started = time.process_time()
        store.apply(batch)
        print(len(batch), time.process_time() - started, flush=True)
    store.drop()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
