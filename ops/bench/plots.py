"""The bench's PNG plots: throughput bars with ratios, and the latency CDF per offered rate."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402

ORDER = ("ceiling", "fraudstream", "naive", "faust")


def throughput(figures: Mapping[str, float | None], title: str, path: Path) -> None:
    """One bar per arm (tx/s), labelled with fraudstream's ratio to it."""
    names = [n for n in ORDER if figures.get(n)]
    values = [float(figures[n] or 0) for n in names]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(names, values, color=[_color(n) for n in names])
    ax.set_yscale("log")
    ax.set_ylabel("transactions / s (log scale)")
    ax.set_title(title, fontsize=10)
    ours = figures.get("fraudstream")
    for bar, name, value in zip(bars, names, values, strict=True):
        label = f"{value:,.0f}/s"
        if ours and name != "fraudstream":
            label += f"\nfraudstream {ours / value:.2f}×"
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.margins(y=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _color(name: str) -> str:
    return {"ceiling": "#999999", "fraudstream": "#1f77b4"}.get(name, "#d62728")


def _cdf_step(ax: Any, lat: np.ndarray, **style: Any) -> Any:
    """Draw the empirical CDF of sorted latencies ``lat`` (ms); returns the line."""
    y = np.arange(1, len(lat) + 1) / len(lat)
    # Kafka timestamps have 1 ms resolution: 0 ms is drawn at 0.5 ms on the log axis
    (line,) = ax.step(np.maximum(lat, 0.5), y, where="post", **style)
    return line


def latency_cdf(
    samples: Mapping[str, np.ndarray],
    rates: Mapping[str, float],
    budget_ms: float,
    path: Path,
    floor: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Empirical CDF of end-to-end latency per offered rate, with the budget marked; with
    ``floor``, the Kafka path alone at the same rate dotted in the same colour."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, lat in samples.items():
        if len(lat) == 0:
            continue
        line = _cdf_step(ax, lat, label=f"{label} of max ({rates[label]:,.0f} tx/s)")
        alone = (floor or {}).get(label)
        if alone is not None and len(alone):
            _cdf_step(
                ax,
                alone,
                linestyle=":",
                color=line.get_color(),
                label=f"{label}: Kafka path alone",
            )
    ax.axvline(budget_ms, color="k", linestyle="--", linewidth=1, label=f"budget {budget_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency, ms (decision minus input Kafka timestamp, log scale)")
    ax.set_ylabel("share of transactions")
    ax.set_title("fraudstream serve: latency at fixed offered rates", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
