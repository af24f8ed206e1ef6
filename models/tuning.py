"""``--tune N``: random search over ``fraudstream.models.params.sample_params``, scored by mean
average precision over the prequential validation folds (each candidate early-stops on
the same folds when its parameters say so)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.models.dataset import Dataset
from fraudstream.models.exceptions import TrainingError
from fraudstream.models.params import Params, sample_params
from fraudstream.models.protocol import Split
from fraudstream.models.validation import (
    Fitting,
    FoldResult,
    Progress,
    Validation,
    mean_of,
    validate,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a random search."""

    best: Params
    """The parameter set with the highest mean validation average precision (with the
    tree count it chose)."""
    best_folds: list[FoldResult]
    """Its fold results (fold 0 is used to choose thresholds)."""
    best_curve: list[dict[str, float]]
    """Its mean validation AP per tree count (empty without early stopping)."""
    table: list[dict[str, Any]]
    """One row per candidate: parameters, per-fold and mean metrics, seconds."""


def search(
    data: Dataset,
    splits: list[Split],
    n: int,
    fitting: Fitting,
    k: int,
    progress: Progress | None = None,
) -> SearchResult:
    """Evaluate ``n`` random parameter sets on every fold and keep the best."""
    if not splits:
        msg = "--tune needs at least one validation fold: the data must start at least "
        msg += "train + delay + validation days before the end of the training window"
        raise TrainingError(msg)
    rng = np.random.default_rng(fitting.seed)
    table: list[dict[str, Any]] = []
    results: list[Validation] = []
    for index in range(n):
        params = sample_params(rng)
        began = time.perf_counter()
        results.append(validate(data, splits, params, fitting, k))
        table.append(_row(index, results[-1], time.perf_counter() - began))
        logger.info("tune %d/%d: AP %.4f with %s", index + 1, n, table[-1]["ap_mean"], params)
        if progress is not None:
            progress("tune", index + 1, n)
    best = results[_best_index(table)]
    return SearchResult(best.params, best.folds, best.curve, table)


def _best_index(table: list[dict[str, Any]]) -> int:
    """The first candidate with the highest finite mean AP (the first when none is finite)."""
    scores = [row["ap_mean"] if math.isfinite(row["ap_mean"]) else -math.inf for row in table]
    return scores.index(max(scores))


def _row(index: int, result: Validation, seconds: float) -> dict[str, Any]:
    folds = result.folds
    return {
        "candidate": index,
        **result.params.to_dict(),
        "ap_mean": mean_of(folds, "average_precision"),
        "ap_folds": [f.average_precision for f in folds],
        "auc_mean": mean_of(folds, "roc_auc"),
        "card_precision_mean": mean_of(folds, "card_precision"),
        "seconds": round(seconds, 2),
    }
