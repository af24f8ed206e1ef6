"""Mean and spread over seeds, paired differences, and the Markdown table of the ablation."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from variants import CURRENT, Variant

HEADLINE = ("roc_auc", "average_precision", "card_precision_at_100")
TARGETS = {"roc_auc": 0.88, "average_precision": 0.70, "card_precision_at_100": 0.30}
"""Issue 20's targets for default training."""
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"

Runs = Mapping[str, Sequence[Mapping[str, float]]]
"""Variant name -> one metrics dict per seed, in seed order."""


def summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max."""
    array = np.asarray(values, dtype=np.float64)
    spread = float(array.std(ddof=1)) if array.size > 1 else float("nan")
    return {"mean": float(array.mean()), "std": spread,
            "min": float(array.min()), "max": float(array.max())}  # fmt: skip


def summarize(runs: Runs, variants: Mapping[str, Variant]) -> dict[str, Any]:
    """Per variant and metric: ``summary`` over seeds, and the paired difference against
    the variant it is compared with (same seeds)."""
    out: dict[str, Any] = {}
    for name, per_seed in runs.items():
        metrics = sorted({k for row in per_seed for k in row})
        entry = {m: summary([row[m] for row in per_seed]) for m in metrics}
        against = variants[name].against
        if against in runs:
            entry["paired_difference"] = _paired(per_seed, runs[against])
        if name != "before" and "before" in runs:
            entry["paired_difference_with_before"] = _paired(per_seed, runs["before"])
        out[name] = entry
    return out


def _paired(
    rows: Sequence[Mapping[str, float]], others: Sequence[Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    return {
        m: summary([a[m] - b[m] for a, b in zip(rows, others, strict=True)])
        for m in HEADLINE + ("validation_average_precision",)
    }


def markdown(
    summaries: Mapping[str, Any], variants: Mapping[str, Variant], seeds: Sequence[int]
) -> str:
    """The ablation table: mean ± standard deviation over the seeds, and the paired
    difference of AP against the row each variant is compared with."""
    head = ["group", "variant", "ROC AUC", "AP", "CP@100", "Δ AP (paired)", "vs", "valid AP",
            "trees", "Σscore/frauds", "store-blind AP"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in summaries.items():
        variant = variants[name]
        diff = entry.get("paired_difference", {}).get("average_precision")
        cells = [
            variant.group,
            variant.label,
            *[_pm(entry[m]) for m in HEADLINE],
            _signed(diff) if diff else "",
            variant.against or "",
            _pm(entry["validation_average_precision"]),
            f"{entry['trees']['mean']:.0f}",
            _mean(entry.get("calibration_ratio")),
            _mean(entry.get("partial_features_average_precision")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    current = summaries.get(CURRENT, summaries.get("defaults"))
    notes = [
        f"Seeds {', '.join(map(str, seeds))}; ± is the standard deviation over them.",
        gain_line(current),
        target_line(current),
        auc_loss_line(current),
    ]
    lines += ["", *[note for note in notes if note]]  # fmt: skip
    return "\n".join(lines) + "\n"


def gain_line(entry: Mapping[str, Any] | None) -> str:
    """The defaults against ``before``, paired over the seeds."""
    paired = (entry or {}).get("paired_difference_with_before")
    if not paired:
        return ""
    parts = [f"{metric} {_signed(paired[metric])}" for metric in HEADLINE]
    return f"Defaults against before, paired over the seeds: {', '.join(parts)}."


def target_line(entry: Mapping[str, Any] | None) -> str:
    """Whether the defaults' means meet issue 20's targets."""
    if entry is None:
        return ""
    parts = []
    for metric, target in TARGETS.items():
        mean = entry[metric]["mean"]
        parts.append(f"{metric} {mean:.3f} {'>=' if mean >= target else '<'} {target:.2f}")
    met = all(entry[m]["mean"] >= t for m, t in TARGETS.items())
    return f"Defaults against the targets: {', '.join(parts)}: {'met' if met else 'not met'}."


KINDS = {
    "terminal_unseen": "terminal frauds before any fraud of the terminal is known",
    "terminal_visible": "terminal frauds after one is",
    "card": "compromised cards",
    "amount": "amounts over 220",
}


def auc_loss_line(entry: Mapping[str, Any] | None) -> str:
    """Where the defaults' 1 - AUC comes from, by kind of fraud ranked too low."""
    if entry is None or "auc_loss_terminal_unseen" not in entry:
        return ""
    parts = [
        f"{entry[f'auc_loss_{kind}']['mean']:.3f} from {text} "
        f"({entry[f'fraud_share_{kind}']['mean']:.0%} of frauds)"
        for kind, text in KINDS.items()
    ]
    return f"Defaults' 1 - AUC by kind of fraud: {'; '.join(parts)}."


def update_readme(path: Path, table: str) -> None:
    """Replace the text between the ablation markers of ``path`` with ``table``."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        msg = f"{path} has no {BEGIN} ... {END} section to replace"
        raise SystemExit(msg)
    path.write_text(pattern.sub(lambda _m: f"{BEGIN}\n{table}{END}", text), encoding="utf-8")


def _pm(stats: Mapping[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _mean(stats: Mapping[str, float] | None) -> str:
    return "" if stats is None else f"{stats['mean']:.2f}"


def _signed(stats: Mapping[str, float]) -> str:
    return f"{stats['mean']:+.3f} ± {stats['std']:.3f}"
