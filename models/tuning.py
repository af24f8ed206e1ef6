"""``--tune N``: random search over ``models.params.sample_params``, scored by mean
average precision over the prequential validation folds."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.dataset import Dataset
from models.exceptions import TrainingError
from models.params import Params, sample_params
from models.protocol import Split
from models.validation import FoldResult, mean_of, run_fold

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a random search."""

    best: Params
    """The parameter set with the highest mean validation average precision."""
    best_folds: list[FoldResult]
    """Its fold results (fold 0 is used to choose thresholds)."""
    table: list[dict[str, Any]]
    """One row per candidate: parameters, per-fold and mean metrics, seconds."""


def search(
    data: Dataset, splits: list[Split], n: int, device: str, seed: int, k: int
) -> SearchResult:
    """Evaluate ``n`` random parameter sets on every fold and keep the best."""
    if not splits:
        msg = "--tune needs at least one validation fold: the data must start at least "
        msg += "train + delay + validation days before the end of the training window"
        raise TrainingError(msg)
    rng = np.random.default_rng(seed)
    best_ap, best_index = -math.inf, 0
    table: list[dict[str, Any]] = []
    results: list[list[FoldResult]] = []
    for index in range(n):
        params = sample_params(rng)
        began = time.perf_counter()
        folds = [run_fold(data, split, params, device, seed, k) for split in splits]
        row = _row(index, params, folds, time.perf_counter() - began)
        logger.info("tune %d/%d: AP %.4f with %s", index + 1, n, row["ap_mean"], params)
        table.append(row)
        results.append(folds)
        if math.isfinite(row["ap_mean"]) and row["ap_mean"] > best_ap:
            best_ap, best_index = row["ap_mean"], index
    return SearchResult(Params(**_params_of(table[best_index])), results[best_index], table)


def _row(index: int, params: Params, folds: list[FoldResult], seconds: float) -> dict[str, Any]:
    return {
        "candidate": index,
        **params.to_dict(),
        "ap_mean": mean_of(folds, "average_precision"),
        "ap_folds": [f.average_precision for f in folds],
        "auc_mean": mean_of(folds, "roc_auc"),
        "card_precision_mean": mean_of(folds, "card_precision"),
        "seconds": round(seconds, 2),
    }


def _params_of(row: dict[str, Any]) -> dict[str, Any]:
    names = Params.__dataclass_fields__.keys()
    return {name: row[name] for name in names}
