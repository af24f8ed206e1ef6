"""Prequential validation: consecutive train / delay / validation windows before a date.

Fold ``j`` validates on the ``valid_days`` ending ``j * valid_days`` before the final
training window's end, with its own training window ``train_days`` long and the label
delay between them; fold 0 therefore validates on the most recent data. Each fold's
validation window gets the protocol's exclusions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from features.definitions import TRANSACTION_LEVEL_NAMES
from models import metrics, protocol
from models.dataset import Dataset
from models.manifest import default_truncation
from models.params import Params
from models.protocol import DAY_MS, EvalSet, Split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldResult:
    """One validation fold for one parameter set."""

    train_start: str
    """ISO start of the fold's training window."""
    average_precision: float
    """Average precision on the validation window."""
    roc_auc: float
    """ROC AUC on the validation window."""
    card_precision: float
    """Card precision at k on the validation window."""
    scores: npt.NDArray[np.float64]
    """Validation scores (kept to choose thresholds)."""
    eval_set: EvalSet
    """The validation transactions the scores belong to."""
    truncated_scores: npt.NDArray[np.float64]
    """Validation scores of the first ``default_truncation`` trees (the truncated rung)."""
    average_precision_truncated_model: float
    """Average precision of ``truncated_scores``."""
    roc_auc_truncated_model: float
    """ROC AUC of ``truncated_scores``."""
    average_precision_partial_features: float
    """Average precision of the validation window scored without store features."""
    roc_auc_partial_features: float
    """ROC AUC of the same."""


def fold_splits(
    data: Dataset, train_end_ms: int, train_days: int, delay_days: int, valid_days: int, folds: int
) -> list[Split]:
    """Up to ``folds`` splits; folds whose training window starts before the data are skipped."""
    first_day = int(data.df["event_time_ms"].min()) // DAY_MS * DAY_MS
    splits = []
    for j in range(folds):
        valid_start = train_end_ms - (j + 1) * valid_days * DAY_MS
        start = valid_start - (delay_days + train_days) * DAY_MS
        if start < first_day:
            logger.info(
                "validation fold %d would start %s, before the data", j, protocol.iso_ms(start)
            )
            continue
        day = protocol.iso_ms(start)[:10]
        split = protocol.split(data.df, day, train_days, delay_days, valid_days)
        if _has_both_classes(data, split.train_rows) and split.test_rows.size:
            splits.append(split)
    return splits


def _has_both_classes(data: Dataset, rows: npt.NDArray[np.int64]) -> bool:
    labels = data.y[rows]
    return bool(labels.size) and 0 < int(labels.sum()) < labels.size


def fit(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int8],
    params: Params,
    device: str,
    seed: int,
    feature_names: tuple[str, ...] | None = None,
) -> xgb.Booster:
    """Train one booster with ``params`` on ``device`` (rows with the store features
    missing added as ``params.store_outage_share`` says, see ``with_store_outages``)."""
    names = list(feature_names) if feature_names else None
    x, y = with_store_outages(x, y, params.store_outage_share, seed)
    matrix = xgb.QuantileDMatrix(x, label=y, feature_names=names)
    booster = xgb.train(params.booster_params(device, seed), matrix, num_boost_round=params.n_trees)
    # Validation, thresholds and evaluation predict from NumPy arrays: a booster left on
    # cuda would copy them through XGBoost's mismatched-device fallback, which warns.
    booster.set_param({"device": "cpu"})
    return booster


def with_store_outages(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], share: float, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    """``x`` and ``y`` plus a random ``share`` of their rows again, with every store feature
    (all but the transaction-level ones) missing, as the partial-features rung scores them."""
    if share <= 0 or not len(x):
        return x, y
    picked = np.flatnonzero(np.random.default_rng(seed).random(len(x)) < share)
    outage = x[picked].copy()
    outage[:, len(TRANSACTION_LEVEL_NAMES) :] = np.nan
    return np.concatenate([x, outage]), np.concatenate([y, y[picked]])


def score_partial(booster: xgb.Booster, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Scores of ``x`` with every store feature missing, as the partial-features rung sees it."""
    blind = x.copy()
    blind[:, len(TRANSACTION_LEVEL_NAMES) :] = np.nan
    return np.asarray(booster.inplace_predict(blind, missing=np.nan), dtype=np.float64)


def run_fold(
    data: Dataset, split: Split, params: Params, device: str, seed: int, k: int
) -> FoldResult:
    """Train on the fold's training window, score its validation window."""
    booster = fit(data.x[split.train_rows], data.y[split.train_rows], params, device, seed)
    x = data.x[split.test_rows]
    scores = np.asarray(booster.inplace_predict(x, missing=np.nan), dtype=np.float64)
    trees = default_truncation(booster.num_boosted_rounds())
    truncated = np.asarray(
        booster.inplace_predict(x, missing=np.nan, iteration_range=(0, trees)), dtype=np.float64
    )
    partial = score_partial(booster, x)
    eval_set = protocol.eval_set(data.df, split)
    y = eval_set.y
    card = metrics.card_precision_at_k(eval_set.day, eval_set.customer, y, scores, k)
    return FoldResult(
        train_start=protocol.iso_ms(split.train_start_ms),
        average_precision=metrics.average_precision(y, scores),
        roc_auc=metrics.roc_auc(y, scores),
        card_precision=card.mean,
        scores=scores,
        eval_set=eval_set,
        truncated_scores=truncated,
        average_precision_truncated_model=metrics.average_precision(y, truncated),
        roc_auc_truncated_model=metrics.roc_auc(y, truncated),
        average_precision_partial_features=metrics.average_precision(y, partial),
        roc_auc_partial_features=metrics.roc_auc(y, partial),
    )


def mean_of(results: list[FoldResult], name: str) -> float:
    """NaN-tolerant mean of one metric over folds (NaN when every fold is NaN)."""
    values = np.array([getattr(r, name) for r in results], dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
