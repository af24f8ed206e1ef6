"""The scoring arm: rows/s of the scorer alone by batch size, through the models
engineer's ``scoring_bench`` on the bench model, flattened into one row per device x batch."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import scoring_bench
from workload import Model

from fraudstream.models.device import gpu_visible

SIZES = (1, 64, 1024, 16384)


def scoring(model: Model, out: Path, budget_s: float) -> list[dict[str, Any]]:
    """cpu rows (policy, one thread, all cores) and a cuda row per size or why it is missing."""
    argv = [
        "--registry",
        str(model.registry),
        "--model",
        model.version,
        "--sizes",
        ",".join(map(str, SIZES)),
        "--budget-s",
        str(budget_s),
        "--out",
        str(out),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        scoring_bench.main(argv)
    raw = json.loads(out.read_text(encoding="utf-8"))
    rows = [_cpu_row(b) for b in raw["cpu"]["batches"]]
    cuda = raw.get("cuda", {})
    if "batches" in cuda:
        rows += [
            {"device": "cuda", "batch": b["batch"], "rows_per_s": b["gpu"]["rows_per_s"]}
            for b in cuda["batches"]
        ]
    else:
        why = "no GPU visible" if not gpu_visible() else cuda.get("skipped", "not measured")
        rows.append({"device": "cuda", "batch": None, "rows_per_s": None, "missing": why})
    return rows


def _cpu_row(b: dict[str, Any]) -> dict[str, Any]:
    return {
        "device": "cpu",
        "batch": b["batch"],
        "rows_per_s": b["policy"]["rows_per_s"],
        "p50_ms": b["policy"]["p50_ms"],
        "rows_per_s_1_thread": b["1_thread"]["rows_per_s"],
        "rows_per_s_all_cores": b["all_cores"]["rows_per_s"],
    }
