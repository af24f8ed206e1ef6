"""Prequential validation: consecutive train / delay / validation windows before a date.

Fold ``j`` validates on the ``valid_days`` ending ``j * valid_days`` before the final
training window's end, with its own training window ``train_days`` long and the label
delay between them; fold 0 therefore validates on the most recent data. Each fold's
validation window gets the protocol's exclusions. The folds also choose the number of
trees (``Params.early_stopping``): each fold's booster is scored at every tree count.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from fraudstream.features.definitions import TRANSACTION_LEVEL_NAMES
from fraudstream.models import metrics, protocol
from fraudstream.models.dataset import Dataset
from fraudstream.models.manifest import default_truncation
from fraudstream.models.params import TREE_STEP, TREE_TOLERANCE, Params
from fraudstream.models.protocol import DAY_MS, EvalSet, Split

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called with a stage (``"folds"``, ``"tune"``), the steps done and the steps in all."""


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
    trees: int
    """Trees the scores use (the chosen count under early stopping)."""


@dataclass(frozen=True)
class FoldModel:
    """A fold's booster and the validation rows it is judged on."""

    split: Split
    """The fold's windows."""
    booster: xgb.Booster
    """Trained on the fold's training window with the parameters' ``n_trees``."""
    x: npt.NDArray[np.float32]
    """Features of the validation rows (after the exclusions)."""
    eval_set: EvalSet
    """The validation rows' labels, days and customers."""


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


@dataclass(frozen=True)
class Fitting:
    """How the boosters of one training run are fitted, besides their parameters."""

    device: str
    """Device to train on."""
    seed: int
    """Seed of XGBoost's sampling and of the store-outage rows."""
    base_score: float | None = None
    """Starting probability shared by every booster of the run (the final training
    window's fraud share): fold and final boosters then start from one intercept, so
    thresholds chosen on a fold's scores fit the final model's. None: XGBoost estimates
    one per booster from its own rows."""


def fit(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int8],
    params: Params,
    fitting: Fitting,
    feature_names: tuple[str, ...] | None = None,
) -> xgb.Booster:
    """Train one booster with ``params`` (rows with the store features missing added as
    ``params.store_outage_share`` says, see ``with_store_outages``)."""
    names = list(feature_names) if feature_names else None
    x, y = with_store_outages(x, y, params.store_outage_share, fitting.seed)
    matrix = xgb.QuantileDMatrix(x, label=y, feature_names=names, max_bin=params.max_bin)
    settings = params.booster_params(fitting.device, fitting.seed)
    if fitting.base_score is not None:
        settings["base_score"] = fitting.base_score
    booster = xgb.train(settings, matrix, num_boost_round=params.n_trees)
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


def score_partial(
    booster: xgb.Booster, x: npt.NDArray[np.float32], trees: int = 0
) -> npt.NDArray[np.float64]:
    """Scores of ``x`` with every store feature missing, as the partial-features rung sees
    it (the first ``trees`` trees; 0: all)."""
    blind = x.copy()
    blind[:, len(TRANSACTION_LEVEL_NAMES) :] = np.nan
    return _predict(booster, blind, trees)


def fit_fold(data: Dataset, split: Split, params: Params, fitting: Fitting) -> FoldModel:
    """The fold's booster with ``params.n_trees`` trees and its validation rows."""
    booster = fit(data.x[split.train_rows], data.y[split.train_rows], params, fitting)
    return FoldModel(split, booster, data.x[split.test_rows], protocol.eval_set(data.df, split))


def result_at(fold: FoldModel, trees: int, k: int) -> FoldResult:
    """The fold's metrics with the first ``trees`` trees (and the rungs below them)."""
    scores = _predict(fold.booster, fold.x, trees)
    truncated = _predict(fold.booster, fold.x, default_truncation(trees))
    partial = score_partial(fold.booster, fold.x, trees)
    y = fold.eval_set.y
    card = metrics.card_precision_at_k(fold.eval_set.day, fold.eval_set.customer, y, scores, k)
    return FoldResult(
        train_start=protocol.iso_ms(fold.split.train_start_ms),
        average_precision=metrics.average_precision(y, scores),
        roc_auc=metrics.roc_auc(y, scores),
        card_precision=card.mean,
        scores=scores,
        eval_set=fold.eval_set,
        truncated_scores=truncated,
        average_precision_truncated_model=metrics.average_precision(y, truncated),
        roc_auc_truncated_model=metrics.roc_auc(y, truncated),
        average_precision_partial_features=metrics.average_precision(y, partial),
        roc_auc_partial_features=metrics.roc_auc(y, partial),
        trees=trees,
    )


def tree_counts(n_trees: int) -> list[int]:
    """Tree counts early stopping compares: multiples of ``TREE_STEP`` and ``n_trees``."""
    return sorted({*range(TREE_STEP, n_trees, TREE_STEP), n_trees})


def choose_trees(folds: Sequence[FoldModel], params: Params) -> tuple[int, list[dict[str, float]]]:
    """The fewest trees whose mean validation AP over ``folds`` is within ``TREE_TOLERANCE``
    of the best count's, and the curve (trees, mean AP) behind the choice; ``n_trees``
    without early stopping, without folds, or when no fold has a fraud."""
    if not params.early_stopping or not folds:
        return params.n_trees, []
    counts = tree_counts(params.n_trees)
    per_fold = np.array([_ap_curve(fold, counts) for fold in folds], dtype=np.float64)
    finite = np.isfinite(per_fold)
    if not finite.any():
        return params.n_trees, []
    mean = np.where(finite, per_fold, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1)
    curve = [{"trees": n, "average_precision": float(v)} for n, v in zip(counts, mean, strict=True)]
    good = np.flatnonzero(mean >= (1 - TREE_TOLERANCE) * mean.max())
    return counts[int(good[0])], curve


@dataclass(frozen=True)
class Validation:
    """Parameters validated on the prequential folds, with the tree count they chose."""

    params: Params
    """The parameters with ``n_trees`` set to the count chosen (what a final model gets)."""
    folds: list[FoldResult]
    """Fold results at that count, fold 0 (the latest) first."""
    curve: list[dict[str, float]]
    """Mean validation AP per tree count early stopping compared (empty without it)."""


def validate(
    data: Dataset,
    splits: Sequence[Split],
    params: Params,
    fitting: Fitting,
    k: int,
    progress: Progress | None = None,
) -> Validation:
    """Fit every fold, choose the tree count (``choose_trees``) and score the folds with it."""
    models = []
    for done, split in enumerate(splits, start=1):
        models.append(fit_fold(data, split, params, fitting))
        if progress is not None:
            progress("folds", done, len(splits))
    trees, curve = choose_trees(models, params)
    folds = [result_at(model, trees, k) for model in models]
    return Validation(dataclasses.replace(params, n_trees=trees), folds, curve)


def _ap_curve(fold: FoldModel, counts: Sequence[int]) -> list[float]:
    y = fold.eval_set.y
    return [metrics.average_precision(y, _predict(fold.booster, fold.x, n)) for n in counts]


def _predict(
    booster: xgb.Booster, x: npt.NDArray[np.float32], trees: int
) -> npt.NDArray[np.float64]:
    scores = booster.inplace_predict(x, missing=np.nan, iteration_range=(0, trees))
    return np.asarray(scores, dtype=np.float64)


def mean_of(results: list[FoldResult], name: str) -> float:
    """NaN-tolerant mean of one metric over folds (NaN when every fold is NaN)."""
    values = np.array([getattr(r, name) for r in results], dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
