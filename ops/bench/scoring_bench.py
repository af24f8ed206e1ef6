"""Rows per second of the scorer alone, per batch size and thread setting.

    .venv/bin/python ops/bench/scoring_bench.py [--registry DIR --model VERSION]
        [--sizes 1,64,1024,16384] [--budget-s 1.0] [--out bench/scoring.json]

Without ``--registry`` a model with the default training parameters is trained on a
small simulated world first (about 10 s). Feature rows come from the same simulator.
Each cell scores the same batch repeatedly for ``--budget-s`` seconds (at least 5
calls) and reports rows/s and per-call latency percentiles, for one thread, all cores,
and the scorer's own per-size policy. A ``cuda`` entry says why it is missing when no GPU
(or no CuPy) is usable. JSON goes to stdout and to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from features.definitions import FeatureConfig
from features.offline import compute_features
from features.simulator import SimulatorConfig, simulate
from models import train
from models.device import choose_device
from models.registry import Registry
from models.scorer import Scorer
from models.threads import ThreadPolicy, usable_cores

SIZES = (1, 64, 1024, 16384)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rows = _feature_rows()
    registry, version = _model(args)
    results: dict[str, Any] = {
        "machine": {
            "cpu_cores": usable_cores(),
            "python": platform.python_version(),
            "xgboost": xgb.__version__,
        },
        "budget_s": args.budget_s,
        "cpu": _bench_cpu(Scorer.load(registry, version, "cpu"), rows, args),
        "cuda": _bench_cuda(registry, version, rows, args),
    }
    text = json.dumps(results, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--model", help="version (default: CURRENT)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--budget-s", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("bench/scoring.json"))
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def _feature_rows() -> np.ndarray:
    world = SimulatorConfig(n_customers=1000, n_terminals=5000, n_days=75, seed=1)
    return compute_features(simulate(world), FeatureConfig()).astype(np.float32)


def _model(args: argparse.Namespace) -> tuple[Registry, str | None]:
    if args.registry is not None:
        return Registry(args.registry), args.model
    df = simulate(SimulatorConfig(n_customers=1000, n_terminals=5000, n_days=75, seed=1))
    result = train.train(df, train.TrainRequest("2018-05-20", folds=0))
    registry = Registry(tempfile.mkdtemp(prefix="scoring-bench-"))
    return registry, train.register(registry, result)


def _bench_cpu(scorer: Scorer, rows: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    cores = scorer.thread_policy.cores
    settings = {
        "1_thread": scorer.with_policy(ThreadPolicy(cores, multi_from_rows=sys.maxsize)),
        "all_cores": scorer.with_policy(ThreadPolicy(cores, multi_from_rows=0)),
        "policy": scorer,
    }
    return {
        "model": scorer.version,
        "trees": scorer.num_trees,
        "policy_all_cores_from_rows": scorer.thread_policy.multi_from_rows,
        "batches": [
            {
                "batch": size,
                **{name: _cell(s, rows, size, args.budget_s) for name, s in settings.items()},
            }
            for size in args.sizes
        ],
    }


def _bench_cuda(
    registry: Registry, version: str | None, rows: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    device, why = choose_device("auto", need_cupy=True)
    if device == "cpu":
        return {"skipped": f"not measured: {why}"}
    scorer = Scorer.load(registry, version, device)
    return {
        "model": scorer.version,
        "device": device,
        "batches": [{"batch": n, "gpu": _cell(scorer, rows, n, args.budget_s)} for n in args.sizes],
    }


def _cell(scorer: Scorer, rows: np.ndarray, size: int, budget_s: float) -> dict[str, float]:
    batch = np.resize(rows, (size, rows.shape[1])).astype(np.float32)
    scorer.score(batch)
    samples: list[float] = []
    began = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - began < budget_s:
        samples.append(scorer.score_timed(batch)[1].total_s)
    seconds = np.asarray(samples)
    return {
        "rows_per_s": round(size * len(samples) / float(seconds.sum()), 1),
        "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 4),
        "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 4),
        "calls": len(samples),
    }


if __name__ == "__main__":
    sys.exit(main())
