"""Rows per second of the scorer alone, per batch size, on the CPU and on CUDA side by side.

    .venv/bin/python ops/bench/scoring_bench.py [--registry DIR --model VERSION]
        [--sizes 1,64,1024,4096,16384] [--budget-s 1.0] [--cuda auto|cuda|cuda:N|off]
        [--out bench/scoring.json]

Without ``--registry`` a model with the default training parameters is trained on a
small simulated world first (about 10 s). Feature rows come from the same simulator.
Each cell scores the same batch repeatedly for ``--budget-s`` seconds (at least 5
calls) and reports rows/s and per-call latency percentiles: on the CPU for one thread,
all cores and the scorer's own per-size policy; on CUDA for the scorer's predictor
(``predictor``: the forest kernel, or XGBoost's for models it cannot evaluate) and for
XGBoost's own GPU predictor alone (``xgboost_gpu``). Reasons (top-3 features by
TreeSHAP) are timed per row at every size too: on CUDA for the path the scorer chose at
load and for each path alone (the table on the CPU, XGBoost's on the GPU), which shows
where the measured switch lies. ``speedup_at_4096`` is CUDA's rows/s over the CPU
policy's at 4,096 rows. A ``cuda`` entry says why it is missing when no GPU (or no CuPy)
works. JSON goes to stdout and to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.models import train
from fraudstream.models.backend import CudaBackend
from fraudstream.models.device import choose_device
from fraudstream.models.exceptions import DeviceUnavailable
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.models.threads import ThreadPolicy, usable_cores

SIZES = (1, 64, 1024, 4096, 16384)
SPEEDUP_AT = 4096
WORLD = SimulatorConfig(n_customers=1000, n_terminals=5000, n_days=75, seed=1)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rows = _feature_rows()
    registry, version = _model(args)
    cpu = _bench_cpu(Scorer.load(registry, version, "cpu"), rows, args)
    cuda = _bench_cuda(registry, version, rows, args)
    results: dict[str, Any] = {
        "machine": _machine(cuda),
        "budget_s": args.budget_s,
        "speedup_at_4096": _speedup(cpu, cuda, SPEEDUP_AT),
        "cpu": cpu,
        "cuda": cuda,
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
    parser.add_argument(
        "--cuda",
        default="auto",
        help="auto (measure when a GPU works), cuda or cuda:N (must work), off",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/scoring.json"))
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def _feature_rows() -> np.ndarray:
    return compute_features(simulate(WORLD), FeatureConfig()).astype(np.float32)


def _model(args: argparse.Namespace) -> tuple[Registry, str | None]:
    if args.registry is not None:
        return Registry(args.registry), args.model
    result = train.train(simulate(WORLD), train.TrainRequest("2018-05-20", folds=0))
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
                "reasons": _reasons_cell(scorer.reasons, rows, size, args.budget_s),
            }
            for size in args.sizes
        ],
    }


def _bench_cuda(
    registry: Registry, version: str | None, rows: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    if args.cuda == "off":
        return {"skipped": "not measured: --cuda off"}
    try:
        device, why = choose_device(args.cuda, need_cupy=True)
    except DeviceUnavailable as exc:
        return {"skipped": f"not measured: {exc}"}
    if device == "cpu":
        return {"skipped": f"not measured: {why}"}
    scorer = Scorer.load(registry, version, device)
    backend = scorer._backend
    assert isinstance(backend, CudaBackend)
    return {
        "model": scorer.version,
        "device": device,
        "predictor": backend.predictor,
        "reasons_on_gpu_from_rows": _rows_or_none(backend.shap_on_gpu_from_rows),
        "reasons_measured_at_load": [
            {"rows": t.rows, "table_ms": t.table_s * 1e3, "gpu_ms": t.gpu_s * 1e3}
            for t in backend.shap_timings
        ],
        "batches": [_cuda_batch(scorer, backend, rows, n, args.budget_s) for n in args.sizes],
    }


def _cuda_batch(
    scorer: Scorer, backend: CudaBackend, rows: np.ndarray, size: int, budget_s: float
) -> dict[str, Any]:
    table = backend.tree_shap
    paths: dict[str, Callable[[np.ndarray], object]] = {"gpu": lambda b: backend.gpu_contribs(b, 0)}
    if table is not None:
        paths["table"] = lambda b: table.contribs(b, 0)
    batch = _batch(rows, size)
    return {
        "batch": size,
        "gpu": _cell(scorer, rows, size, budget_s),
        "xgboost_gpu": _timed_cell(lambda: backend.xgboost_predict(batch, 0), size, budget_s),
        "reasons": _reasons_cell(scorer.reasons, rows, size, budget_s),
        "reasons_by_path": {
            name: _reasons_cell(path, rows, size, budget_s) for name, path in paths.items()
        },
    }


def _cell(scorer: Scorer, rows: np.ndarray, size: int, budget_s: float) -> dict[str, float]:
    batch = _batch(rows, size)
    scorer.score(batch)
    return _rate(_timed(lambda: scorer.score_timed(batch)[1].total_s, budget_s), size)


def _timed_cell(call: Callable[[], object], size: int, budget_s: float) -> dict[str, float]:
    """``_cell`` for a bare predictor call (no scorer around it)."""
    call()
    return _rate(_timed(_wall(call), budget_s), size)


def _rate(samples: np.ndarray, size: int) -> dict[str, float]:
    """Rows per second and per-call percentiles of ``samples`` (seconds per call)."""
    return {
        "rows_per_s": round(size * len(samples) / float(samples.sum()), 1),
        "p50_ms": round(float(np.percentile(samples, 50)) * 1000, 4),
        "p99_ms": round(float(np.percentile(samples, 99)) * 1000, 4),
        "calls": len(samples),
    }


def _wall(call: Callable[[], object]) -> Callable[[], float]:
    """A sampler of ``call``'s wall-clock seconds."""

    def once() -> float:
        began = time.perf_counter()
        call()
        return time.perf_counter() - began

    return once


def _reasons_cell(
    reasons: Callable[[np.ndarray], object], rows: np.ndarray, size: int, budget_s: float
) -> dict[str, float]:
    """Milliseconds per row of reasons for a batch of ``size`` rows (every row alerted)."""
    batch = _batch(rows, size)
    reasons(batch)
    samples = _timed(_wall(lambda: reasons(batch)), budget_s)
    return {
        "ms_per_row": round(float(np.median(samples)) * 1000 / size, 5),
        "p50_ms": round(float(np.percentile(samples, 50)) * 1000, 4),
        "calls": len(samples),
    }


def _batch(rows: np.ndarray, size: int) -> np.ndarray:
    return np.resize(rows, (size, rows.shape[1])).astype(np.float32)


def _timed(call: Callable[[], float], budget_s: float) -> np.ndarray:
    samples: list[float] = []
    began = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - began < budget_s:
        samples.append(call())
    return np.asarray(samples)


def _speedup(cpu: dict[str, Any], cuda: dict[str, Any], size: int) -> float | None:
    on_cpu = {b["batch"]: b["policy"]["rows_per_s"] for b in cpu["batches"]}
    on_gpu = {b["batch"]: b["gpu"]["rows_per_s"] for b in cuda.get("batches", [])}
    if size not in on_cpu or size not in on_gpu:
        return None
    return round(on_gpu[size] / on_cpu[size], 2)


def _rows_or_none(rows: int) -> int | None:
    return None if rows == sys.maxsize else rows


def _machine(cuda: dict[str, Any]) -> dict[str, Any]:
    machine: dict[str, Any] = {
        "cpu_cores": usable_cores(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "xgboost": xgb.__version__,
        "xgboost_cuda": bool(xgb.build_info().get("USE_CUDA")),
    }
    if "batches" in cuda:
        machine["gpu"] = _gpu_name()
        machine["cupy"] = __import__("cupy").__version__
    return machine


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def _gpu_name() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    done = subprocess.run(
        [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


if __name__ == "__main__":
    sys.exit(main())
