"""The backtest report directory: ``report.md``, ``metrics.json``, ``predictions.parquet``
and PNG plots (ROC, precision-recall, card precision@k per day, score distributions by
label, and the live path's latency when the backtest went through Kafka).

Plots use matplotlib's object API (``Figure``), never ``pyplot``: no global state, no GUI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudstream.features.exceptions import ConfigError
from fraudstream.models.manifest import json_safe
from fraudstream.models.protocol import iso_ms
from fraudstream.stream.history.backtest import BacktestResult, LiveRun, ModelRun

logger = logging.getLogger(__name__)

DECISIONS = ("approve", "review", "decline")
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows besides the backtest result itself."""

    result: BacktestResult
    """The backtest."""
    run: dict[str, Any]
    """Run facts for the header and ``metrics.json`` (data, store, flags...)."""
    live: LiveRun | None = None
    """Serve's answers, with ``--via-kafka``."""


def write_report(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """Write the report directory; returns the files written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the report directory {out_dir}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    written = [
        write_predictions(inputs.result, out_dir / "predictions.parquet"),
        write_metrics(inputs, out_dir / "metrics.json"),
        *write_plots(inputs, out_dir),
    ]
    written.append(write_markdown(inputs, out_dir / "report.md", [p.name for p in written]))
    return written


def write_predictions(result: BacktestResult, path: Path) -> Path:
    """``transaction_id``, ``score``, ``decision`` of every test-set transaction (and the
    challenger's score and decision beside them)."""
    frame = pd.DataFrame(
        {
            "transaction_id": result.eval_set.transaction_id.astype(str),
            "score": result.champion.scores,
            "decision": _names(result.champion.codes),
        }
    )
    if result.challenger is not None:
        frame["challenger_score"] = result.challenger.scores
        frame["challenger_decision"] = _names(result.challenger.codes)
    frame.to_parquet(path, index=False)
    return path


def _names(codes: npt.NDArray[np.int8]) -> npt.NDArray[np.str_]:
    return np.asarray(DECISIONS)[codes.astype(np.int64)]


def metrics_document(inputs: ReportInputs) -> dict[str, Any]:
    """The content of ``metrics.json`` (NaN becomes null)."""
    result = inputs.result
    models = {"champion": _model_doc(result.champion)}
    if result.challenger is not None:
        models["challenger"] = _model_doc(result.challenger)
    doc: dict[str, Any] = {
        "run": inputs.run | _window_doc(result),
        "models": models,
    }
    if result.challenger is not None:
        doc["difference"] = difference(result.champion, result.challenger)
    if inputs.live is not None:
        doc["live"] = live_doc(inputs.live)
    safe: dict[str, Any] = json_safe(doc)
    return safe


def write_metrics(inputs: ReportInputs, path: Path) -> Path:
    blob = json.dumps(metrics_document(inputs), indent=2, allow_nan=False)
    path.write_text(blob + "\n")
    return path


def _model_doc(run: ModelRun) -> dict[str, Any]:
    counts = np.bincount(run.codes.astype(np.int64), minlength=3)
    doc = {
        "version": run.version,
        "thresholds": {"review": run.thresholds.review, "decline": run.thresholds.decline},
        "metrics": dict(run.metrics),
        "card_precision_per_day": list(run.card_per_day),
        "decisions": dict(zip(DECISIONS, counts.tolist(), strict=True)),
    }
    if run.rungs:
        doc["rungs"] = run.rungs
    return doc


def _window_doc(result: BacktestResult) -> dict[str, Any]:
    w, split = result.window, result.split
    return {
        "train_start": iso_ms(split.train_start_ms),
        "test_start": iso_ms(split.test_start_ms),
        "test_end": iso_ms(split.test_end_ms),
        "test_days": w.test_days,
        "delay_days": w.delay_days,
        "k": w.k,
        "test_transactions": int(split.test_rows.size),
        "excluded_transactions": split.excluded_rows,
        "transactions_replayed": result.replayed,
        "labels_fed": result.labels_fed,
        "timings_s": dict(result.timings_s),
    }


def difference(champion: ModelRun, challenger: ModelRun) -> dict[str, Any]:
    """Challenger minus champion per metric, and how often their decisions differ."""
    delta = {k: challenger.metrics[k] - v for k, v in champion.metrics.items()}
    changed = champion.codes != challenger.codes
    return {
        "metrics": delta,
        "decisions_changed": int(changed.sum()),
        "decisions_changed_share": float(changed.mean()) if changed.size else float("nan"),
    }


def live_doc(live: LiveRun) -> dict[str, Any]:
    return {
        "sent": live.sent,
        "received": live.received,
        "duplicates": live.duplicates,
        "latency_ms": latency_summary(live.latency_ms),
        "stage_ms_mean": live.stage_ms,
        "degraded": live.degraded,
        "deadline_missed": live.deadline_missed,
        "scores_equal_backtest": live.mismatched == 0 and live.received == live.sent,
        "compared_full_path": live.compared,
        "mismatched_full_path": live.mismatched,
        "max_abs_score_diff_full_path": live.max_abs_diff,
        "metrics": live.metrics,
    }


def latency_summary(values: FloatArray) -> dict[str, float]:
    if values.size == 0:
        return {}
    q = np.quantile(values, [0.5, 0.9, 0.99, 0.999])
    return {
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "p99.9": float(q[3]),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


# ---- plots ------------------------------------------------------------------------------


def roc_curve(y: BoolArray, scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    tp, fp = _counts_by_threshold(y, scores)
    positives, negatives = max(tp[-1], 1), max(fp[-1], 1)
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def pr_curve(y: BoolArray, scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Recall and precision at every distinct threshold, highest threshold first."""
    tp, fp = _counts_by_threshold(y, scores)
    recall = tp / max(tp[-1], 1)
    precision = tp / np.maximum(tp + fp, 1)
    return recall, precision


def _counts_by_threshold(y: BoolArray, scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    order = np.argsort(-scores, kind="mergesort")
    ranked, labels = scores[order], y[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1] if ranked.size else []
    tp = np.cumsum(labels)[last]
    fp = np.cumsum(1.0 - labels)[last]
    return tp, fp


def write_plots(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure  # deferred: matplotlib is slow to import

    result = inputs.result
    runs = [result.champion] + ([result.challenger] if result.challenger else [])
    y = result.eval_set.y
    paths = []
    for name, draw in (
        ("roc.png", _plot_roc),
        ("precision_recall.png", _plot_pr),
        ("card_precision_per_day.png", _plot_card),
        ("score_distribution.png", _plot_scores),
    ):
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        draw(fig, runs, y, result.window.k)
        paths.append(_save(fig, out_dir / name))
    if inputs.live is not None and inputs.live.latency_ms.size:
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        _plot_latency(fig, inputs.live)
        paths.append(_save(fig, out_dir / "latency.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def _label(run: ModelRun, metric: str) -> str:
    return f"{run.version} ({metric} {run.metrics.get(metric, float('nan')):.3f})"


def _plot_roc(fig: Any, runs: Sequence[ModelRun], y: BoolArray, _k: int) -> None:
    ax = fig.subplots()
    for run in runs:
        fpr, tpr = roc_curve(y, run.scores)
        ax.plot(fpr, tpr, label=_label(run, "roc_auc"))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")


def _plot_pr(fig: Any, runs: Sequence[ModelRun], y: BoolArray, _k: int) -> None:
    ax = fig.subplots()
    for run in runs:
        recall, precision = pr_curve(y, run.scores)
        ax.step(recall, precision, where="post", label=_label(run, "average_precision"))
    ax.axhline(float(y.mean()) if y.size else 0.0, linestyle=":", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="upper right")


def _plot_card(fig: Any, runs: Sequence[ModelRun], _y: BoolArray, k: int) -> None:
    ax = fig.subplots()
    name = f"card_precision_at_{k}"
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        days = np.arange(len(run.card_per_day))
        bars = ax.bar(days + i * width, run.card_per_day, width, label=_label(run, name))
        colour = bars.patches[0].get_facecolor() if bars.patches else "grey"
        ax.axhline(run.metrics.get(name, np.nan), linestyle="--", linewidth=0.8, color=colour)
    ax.set(xlabel="test day", ylabel=f"card precision@{k}", title=f"Card precision@{k} per day")
    ax.legend(loc="lower right")


def _plot_scores(fig: Any, runs: Sequence[ModelRun], y: BoolArray, _k: int) -> None:
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    bins = np.linspace(0.0, 1.0, 41)
    for ax, run in zip(axes, runs, strict=True):
        ax.hist(run.scores[~y], bins=bins, alpha=0.6, label=f"genuine ({(~y).sum():,})")
        ax.hist(run.scores[y], bins=bins, alpha=0.6, label=f"fraud ({y.sum():,})")
        for name, value in (("review", run.thresholds.review), ("decline", run.thresholds.decline)):
            ax.axvline(value, linestyle="--", color="black", linewidth=0.8)
            ax.annotate(name, (value, 0.95), xycoords=("data", "axes fraction"), rotation=90)
        ax.set(yscale="log", xlabel="score", ylabel="transactions", title=run.version)
        ax.legend(loc="upper center")


def _plot_latency(fig: Any, live: LiveRun) -> None:
    ax = fig.subplots()
    values = live.latency_ms
    ax.hist(values, bins=60, color="tab:purple")
    summary = latency_summary(values)
    for name in ("p50", "p99"):
        ax.axvline(summary[name], linestyle="--", color="black", linewidth=0.8)
        ax.annotate(
            f"{name} {summary[name]:.1f} ms",
            (summary[name], 0.9),
            xycoords=("data", "axes fraction"),
        )
    ax.set(yscale="log", xlabel="latency from Kafka timestamp to decision (ms)", ylabel="decisions")
    ax.set_title(f"Live path latency ({values.size:,} decisions)")


# ---- markdown ---------------------------------------------------------------------------


def write_markdown(inputs: ReportInputs, path: Path, files: list[str]) -> Path:
    doc = metrics_document(inputs)
    lines = ["# Backtest report", ""]
    lines += _run_section(doc["run"])
    lines += _metrics_section(inputs.result)
    lines += _rungs_section(inputs.result)
    lines += _card_section(inputs.result)
    if inputs.live is not None:
        lines += _live_section(doc["live"])
    lines += ["## Plots", ""]
    lines += [f"![{name}]({name})" for name in files if name.endswith(".png")]
    lines += ["", "Files: " + ", ".join(f"`{name}`" for name in [*files, path.name]), ""]
    path.write_text("\n".join(lines))
    return path


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*out, ""]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:,.4f}".rstrip("0").rstrip(".")
    if value is None:
        return "n/a"
    return str(value)


def _run_section(run: dict[str, Any]) -> list[str]:
    keys = [k for k in run if k != "timings_s"]
    rows = [[k, run[k]] for k in keys]
    rows += [[f"time: {k}", f"{v:.2f} s"] for k, v in run.get("timings_s", {}).items()]
    return ["## Run", "", *_table(["", ""], rows)]


def _metrics_section(result: BacktestResult) -> list[str]:
    runs = [result.champion] + ([result.challenger] if result.challenger else [])
    head = ["metric", *(f"{r.version}" for r in runs)]
    if result.challenger is not None:
        head.append("difference")
    rows = []
    for name, value in result.champion.metrics.items():
        row: list[Any] = [name, value]
        if result.challenger is not None:
            other = result.challenger.metrics[name]
            row += [other, other - value]
        rows.append(row)
    for i, decision in enumerate(DECISIONS):
        row = [f"decisions: {decision}", *(int((r.codes == i).sum()) for r in runs)]
        if result.challenger is not None:
            row.append(row[2] - row[1])
        rows.append(row)
    return ["## Metrics on the protocol's test set", "", *_table(head, rows)]


def _rungs_section(result: BacktestResult) -> list[str]:
    rungs = result.champion.rungs
    if not rungs:
        return []
    metrics = list(next(iter(rungs.values())))
    full_ap = rungs.get("full", {}).get("average_precision", float("nan"))
    rows = [
        [name, *(values[m] for m in metrics), values["average_precision"] / full_ap]
        for name, values in rungs.items()
    ]
    intro = (
        f"What each rung of the latency ladder costs: {result.champion.version} on the same "
        "test set, scored the way each rung scores (a truncated model appears when the model "
        "has thresholds for one; rules score 0, 0.5 or 0.95 by amount)."
    )
    head = ["rung", *metrics, "AP vs full"]
    return ["## Decision quality per rung", "", intro, "", *_table(head, rows)]


def _card_section(result: BacktestResult) -> list[str]:
    runs = [result.champion] + ([result.challenger] if result.challenger else [])
    k = result.window.k
    rows = [[day, *(r.card_per_day[day] for r in runs)] for day in range(len(runs[0].card_per_day))]
    head = ["test day", *(r.version for r in runs)]
    return [f"## Card precision@{k} per day", "", *_table(head, rows)]


def _live_section(live: dict[str, Any]) -> list[str]:
    verdict = "yes" if live["scores_equal_backtest"] else "NO"
    degraded = live["received"] - live["compared_full_path"]
    rows = [
        ["transactions sent / decisions received", f"{live['sent']:,} / {live['received']:,}"],
        ["duplicate decisions", live["duplicates"]],
        [
            "scores equal the backtest's on the full path",
            f"{verdict} ({live['compared_full_path']:,} compared; {degraded:,} degraded "
            "decisions are scored by another rung and not compared)",
        ],
        [
            "full-path mismatches / max difference",
            f"{live['mismatched_full_path']} / {live['max_abs_score_diff_full_path']:.3g}",
        ],
        ["deadline missed", live["deadline_missed"]],
        *[[f"rung: {rung}", n] for rung, n in live["degraded"].items()],
        *[[f"latency {q}", f"{v:.2f} ms"] for q, v in live["latency_ms"].items()],
        *[[f"stage mean: {s}", f"{v:.3f} ms"] for s, v in live["stage_ms_mean"].items()],
    ]
    rows += [[f"live {k}", v] for k, v in live["metrics"].items()]
    return ["## Live path (via Kafka and serve)", "", *_table(["", ""], rows)]
