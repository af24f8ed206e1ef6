"""Accuracy against speed for truncated models (``fraudstream models tradeoff``).

Measures average precision and ROC AUC of the first 10 %, 25 %, 50 % and all trees on a
test window, and the time to score one batch of 1, 64 and 1024 rows on each available
device; writes a Markdown table, a PNG plot and JSON, and records in the manifest the
smallest truncation whose average precision is within 2 % (relative) of the full model's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fraudstream.models import metrics
from fraudstream.models.evaluation import TestWindow, score_all, write_atomically
from fraudstream.models.manifest import RUNG_TRUNCATED, Manifest, Thresholds, json_safe
from fraudstream.models.scorer import Scorer
from fraudstream.models.thresholds import ThresholdTargets, choose_thresholds
from fraudstream.models.validation import Progress

logger = logging.getLogger(__name__)

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
BATCH_SIZES = (1, 64, 1024)
AP_TOLERANCE = 0.02


@dataclass(frozen=True)
class TradeoffRow:
    """One tree count: its accuracy and its scoring time per batch on each device."""

    trees: int
    """Trees used (the first ``trees``)."""
    fraction: float
    """Share of the model's trees."""
    average_precision: float
    """Average precision on the test window."""
    roc_auc: float
    """ROC AUC on the test window."""
    ms_per_batch: dict[str, dict[int, float]]
    """Device -> batch size -> median milliseconds per ``score`` call."""


@dataclass(frozen=True)
class TradeoffReport:
    """The measurements and the truncation level they imply."""

    version: str
    """Model version measured."""
    rows: list[TradeoffRow]
    """One row per tree count, ascending."""
    chosen_trees: int
    """Truncation level to record (see ``choose_truncation``)."""
    within_tolerance: bool
    """False when no truncated level came within the tolerance."""
    notes: list[str]
    """Caveats (devices not measured, tolerance not met)."""


def measure(
    scorers: Sequence[Scorer],
    window: TestWindow,
    fractions: Sequence[float] = FRACTIONS,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    budget_s: float = 0.5,
    progress: Progress | None = None,
) -> list[TradeoffRow]:
    """Accuracy (from the first scorer) and timings (every scorer) per tree count, each
    count reported as ``"tradeoff"``."""
    first = scorers[0]
    rows = []
    for done, fraction in enumerate(fractions, start=1):
        trees = max(1, round(first.num_trees * fraction))
        scores = score_all(first, window.x, trees)
        timings = {s.device: _timings(s, window.x, trees, batch_sizes, budget_s) for s in scorers}
        rows.append(
            TradeoffRow(
                trees=trees,
                fraction=fraction,
                average_precision=metrics.average_precision(window.eval_set.y, scores),
                roc_auc=metrics.roc_auc(window.eval_set.y, scores),
                ms_per_batch=timings,
            )
        )
        if progress is not None:
            progress("tradeoff", done, len(fractions))
    return sorted(rows, key=lambda r: r.trees)


def _timings(
    scorer: Scorer, x: npt.NDArray[np.float32], trees: int, sizes: Sequence[int], budget_s: float
) -> dict[int, float]:
    out = {}
    for size in sizes:
        batch = np.resize(x, (size, x.shape[1])).astype(np.float32)
        scorer.score(batch, trees)  # warm
        samples: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(samples) < 5 or (time.perf_counter() < deadline and len(samples) < 2000):
            samples.append(scorer.score_timed(batch, trees)[1].total_s)
        out[size] = float(np.median(samples) * 1000)
    return out


def choose_truncation(
    rows: Sequence[TradeoffRow], tolerance: float = AP_TOLERANCE
) -> tuple[int, bool]:
    """Smallest truncated tree count with AP >= (1 - tolerance) x the full model's AP.

    When none qualifies, the largest truncated level measured is returned with False, so
    the truncated rung still saves time but the caller can warn about the accuracy cost.
    """
    full = max(rows, key=lambda r: r.trees)
    truncated = sorted((r for r in rows if r.trees < full.trees), key=lambda r: r.trees)
    for row in truncated:
        if row.average_precision >= (1 - tolerance) * full.average_precision:
            return row.trees, True
    return (truncated[-1].trees if truncated else full.trees), False


def report(version: str, rows: list[TradeoffRow], notes: list[str]) -> TradeoffReport:
    """Bundle measurements with the chosen truncation and its caveats."""
    chosen, ok = choose_truncation(rows)
    notes = list(notes)
    if not ok:
        notes.append(
            f"no truncated level kept average precision within {AP_TOLERANCE:.0%} of the full "
            f"model; recorded the largest measured ({chosen} trees)"
        )
    return TradeoffReport(version, rows, chosen, ok, notes)


def markdown(result: TradeoffReport) -> str:
    """The table as Markdown, the chosen level marked."""
    devices = sorted({d for r in result.rows for d in r.ms_per_batch})
    sizes = sorted({n for r in result.rows for t in r.ms_per_batch.values() for n in t})
    full_ap = max(result.rows, key=lambda r: r.trees).average_precision
    timing_heads = [f"{d} ms/batch@{n}" for d in devices for n in sizes]
    head = ["trees", "share", "avg precision", "AP vs full", "ROC AUC", *timing_heads]
    lines = [
        f"Model {result.version}: accuracy against scoring time per batch",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in result.rows:
        mark = " (chosen)" if row.trees == result.chosen_trees else ""
        cells = [
            f"{row.trees}{mark}",
            f"{row.fraction:.0%}",
            f"{row.average_precision:.4f}",
            f"{row.average_precision / full_ap - 1:+.1%}",
            f"{row.roc_auc:.4f}",
            *[f"{row.ms_per_batch[d][n]:.3f}" for d in devices for n in sizes],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *[f"- {note}" for note in result.notes]]
    return "\n".join(lines).rstrip() + "\n"


def plot(result: TradeoffReport, path: Path) -> None:
    """AP against trees, and time per batch against trees, as a PNG (Agg, no display)."""
    # imported here: matplotlib costs every command of the CLI about 0.4 s at start-up
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    trees = [r.trees for r in result.rows]
    left.plot(trees, [r.average_precision for r in result.rows], marker="o")
    left.axvline(result.chosen_trees, linestyle="--", color="grey")
    left.set(xlabel="trees", ylabel="average precision", title="accuracy")
    for device in sorted(result.rows[0].ms_per_batch):
        for size in sorted(result.rows[0].ms_per_batch[device]):
            times = [r.ms_per_batch[device][size] for r in result.rows]
            right.plot(trees, times, marker="o", label=f"{device}, batch {size}")
    right.set(xlabel="trees", ylabel="ms per batch", yscale="log", title="scoring time")
    right.legend(fontsize="small")
    figure.suptitle(f"model {result.version}")
    figure.tight_layout()
    write_atomically(path, lambda temp: figure.savefig(temp, format="png", dpi=100))


def write(result: TradeoffReport, out_dir: Path) -> list[Path]:
    """``tradeoff.md``, ``tradeoff.png`` and ``tradeoff.json`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "tradeoff.md", out_dir / "tradeoff.png", out_dir / "tradeoff.json"]
    text = markdown(result)
    write_atomically(paths[0], lambda temp: temp.write_text(text, encoding="utf-8"))
    plot(result, paths[1])
    blob = json.dumps(json_safe(asdict(result)), indent=2, allow_nan=False)
    write_atomically(paths[2], lambda temp: temp.write_text(blob, encoding="utf-8"))
    return paths


def truncated_rung(
    scorer: Scorer, window: TestWindow, result: TradeoffReport
) -> tuple[Thresholds, dict[str, float]]:
    """Thresholds for the chosen truncation, fitted on ``window`` for the targets the
    model's own thresholds were chosen for, and the metrics that record the rung's quality
    (average precision of the full model and of the truncation on that window)."""
    targets = _targets(scorer.manifest)
    scores = score_all(scorer, window.x, result.chosen_trees)
    choice = choose_thresholds(window.eval_set, scores, targets)
    full = max(result.rows, key=lambda r: r.trees)
    chosen = next(r for r in result.rows if r.trees == result.chosen_trees)
    quality = {
        "tradeoff_average_precision": full.average_precision,
        f"tradeoff_average_precision_{RUNG_TRUNCATED}": chosen.average_precision,
    }
    return choice.thresholds, quality


def _targets(manifest: Manifest) -> ThresholdTargets:
    recorded = manifest.provenance.get("thresholds", {}).get("targets", {})
    defaults = ThresholdTargets()
    return ThresholdTargets(
        review_customers_per_day=int(
            recorded.get("review_customers_per_day", defaults.review_customers_per_day)
        ),
        decline_precision=float(recorded.get("decline_precision", defaults.decline_precision)),
    )
