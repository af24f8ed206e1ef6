"""Training one model on the handbook protocol: features up to the end of the training
window, prequential validation (the tree count, optional tuning), thresholds, the final
fit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost as xgb

from fraudstream.features.definitions import FeatureConfig
from fraudstream.models import protocol, tuning
from fraudstream.models.dataset import Dataset, features_until, fingerprint
from fraudstream.models.exceptions import TrainingError
from fraudstream.models.manifest import (
    RUNG_PARTIAL,
    RUNG_TRUNCATED,
    Thresholds,
    TrainWindow,
    default_truncation,
)
from fraudstream.models.params import DEFAULT_PARAMS, Params
from fraudstream.models.protocol import DAY_MS, EvalSet
from fraudstream.models.registry import Registry
from fraudstream.models.thresholds import ThresholdChoice, ThresholdTargets, choose_thresholds
from fraudstream.models.validation import (
    Fitting,
    FoldResult,
    Progress,
    Validation,
    fit,
    fold_splits,
    mean_of,
    score_partial,
    validate,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """What to train: the window, the validation folds, the parameters or the search."""

    train_start: str
    """First day of the training window, ``YYYY-MM-DD`` (UTC)."""
    train_days: int = 7
    """Length of the training window."""
    delay_days: int = 7
    """Label delay between a training window and what it is tested on."""
    valid_days: int = 7
    """Length of each validation window."""
    folds: int = 4
    """Prequential validation folds (fewer when the data starts too late)."""
    params: Params | None = None
    """Parameters to use; None = ``DEFAULT_PARAMS`` (ignored with ``tune``)."""
    tune: int = 0
    """Random-search candidates; 0 = no search."""
    seed: int = 0
    """Seed for XGBoost's sampling and the search."""
    device: str = "cpu"
    """Resolved device (see ``fraudstream.models.device.resolve_device``)."""
    targets: ThresholdTargets = field(default_factory=ThresholdTargets)
    """Threshold targets."""
    k: int = 100
    """k of card precision at k."""


@dataclass(frozen=True)
class TrainResult:
    """A trained model and everything its manifest records."""

    booster: xgb.Booster
    """The final model, trained on the training window."""
    params: Params
    """Parameters it was trained with."""
    thresholds: Thresholds
    """Thresholds chosen on validation data."""
    partial_thresholds: Thresholds
    """Thresholds for the partial-features rung, chosen the same way on the validation
    data scored with every store feature missing."""
    truncated_thresholds: Thresholds
    """Thresholds for the truncated rung (``default_truncation`` trees), chosen for the same
    targets on the latest validation fold scored with that many trees."""
    metrics: dict[str, float | None]
    """Validation metrics (means over folds)."""
    train_window: TrainWindow
    """Training window and label delay."""
    data_fingerprint: str
    """Fingerprint of the training rows."""
    device: str
    """Device trained on."""
    provenance: dict[str, Any]
    """Folds, search table, threshold details."""


def train(
    df: pd.DataFrame,
    request: TrainRequest,
    config: FeatureConfig | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train, validate and choose thresholds on ``df`` (canonical columns, with labels).

    ``progress`` hears about the feature computation (``"features"``), each validation fold
    (``"folds"``), each ``--tune`` candidate (``"tune"``) and the final fit (``"final"``)."""
    config = config or FeatureConfig()
    end = protocol.day_start_ms(request.train_start) + request.train_days * DAY_MS
    report = progress or _silent
    report("features", 0, 1)
    data = features_until(df, end, config)
    report("features", 1, 1)
    return train_on(data, request, config.feature_names, progress)


def train_on(
    data: Dataset,
    request: TrainRequest,
    feature_names: tuple[str, ...],
    progress: Progress | None = None,
) -> TrainResult:
    """``train`` on features already computed: ``data.x``'s columns are ``feature_names``
    (the transaction-level ones first, as ``FeatureConfig`` lays them out)."""
    start = protocol.day_start_ms(request.train_start)
    end = start + request.train_days * DAY_MS
    train_rows = _training_rows(data, start, end)
    splits = fold_splits(
        data, end, request.train_days, request.delay_days, request.valid_days, request.folds
    )
    x, y = data.x[train_rows], data.y[train_rows]
    fitting = Fitting(request.device, request.seed, base_score=float(y.mean()))
    chosen, table = _choose_params(data, splits, request, fitting, progress)
    params, folds = chosen.params, chosen.folds
    booster = fit(x, y, params, fitting, feature_names)
    (progress or _silent)("final", 1, 1)
    choice_source, threshold_choice, partial_choice, truncated_choice = _thresholds(
        data, folds, booster, request, train_rows, start
    )
    logger.info(
        "trained %d trees on %d rows (%d frauds)",
        params.n_trees,
        train_rows.size,
        int(data.y[train_rows].sum()),
    )
    return TrainResult(
        booster=booster,
        params=params,
        thresholds=threshold_choice.thresholds,
        partial_thresholds=partial_choice.thresholds,
        truncated_thresholds=truncated_choice.thresholds,
        metrics=_metrics(folds, request.k),
        train_window=TrainWindow(protocol.iso_ms(start), protocol.iso_ms(end), request.delay_days),
        data_fingerprint=fingerprint(data.df, train_rows),
        device=request.device,
        provenance={
            "train_rows": int(train_rows.size),
            "train_frauds": int(data.y[train_rows].sum()),
            "folds": [_fold_row(f) for f in folds],
            "trees": {"chosen": params.n_trees, "validation_curve": chosen.curve},
            "tuning": table,
            "thresholds": {"source": choice_source, **threshold_choice.detail},
            "partial_thresholds": partial_choice.detail,
            "truncated_thresholds": truncated_choice.detail,
            "seed": request.seed,
            "base_score": fitting.base_score,
        },
    )


def register(registry: Registry, result: TrainResult, config: FeatureConfig | None = None) -> str:
    """Store ``result`` in ``registry`` with the feature schema of ``config``."""
    config = config or FeatureConfig()
    return registry.register(
        result.booster,
        feature_names=config.feature_names,
        schema_hash=config.schema_hash(),
        params=result.params.to_dict(),
        train_window=result.train_window,
        data_fingerprint=result.data_fingerprint,
        metrics=result.metrics,
        thresholds=result.thresholds,
        partial_thresholds=result.partial_thresholds,
        truncated_thresholds=result.truncated_thresholds,
        truncation_trees=default_truncation(result.booster.num_boosted_rounds()),
        device=result.device,
        features=config.describe(),
        provenance=result.provenance,
    )


def _silent(_stage: str, _done: int, _total: int) -> None:
    """A ``Progress`` that reports nothing."""


def _training_rows(data: Dataset, start: int, end: int) -> npt.NDArray[np.int64]:
    times = data.df["event_time_ms"].to_numpy(dtype=np.int64)
    rows = np.flatnonzero((times >= start) & (times < end)).astype(np.int64)
    frauds = int(data.y[rows].sum())
    if rows.size == 0 or frauds in (0, rows.size):
        window = f"{protocol.iso_ms(start)[:10]}..{protocol.iso_ms(end)[:10]}"
        span = f"{protocol.iso_ms(int(times.min()))[:10]}..{protocol.iso_ms(int(times.max()))[:10]}"
        msg = f"training window {window} has {rows.size} transactions and {frauds} frauds; "
        msg += f"it needs both classes (data covers {span}): pick another --train-start"
        raise TrainingError(msg)
    return rows


def _choose_params(
    data: Dataset,
    splits: list[protocol.Split],
    request: TrainRequest,
    fitting: Fitting,
    progress: Progress | None,
) -> tuple[Validation, list[dict[str, Any]]]:
    if request.tune > 0:
        found = tuning.search(data, splits, request.tune, fitting, request.k, progress)
        logger.info("tuning chose %s", found.best)
        return Validation(found.best, found.best_folds, found.best_curve), found.table
    params = request.params or DEFAULT_PARAMS
    return validate(data, splits, params, fitting, request.k, progress), []


def _thresholds(
    data: Dataset,
    folds: list[FoldResult],
    booster: xgb.Booster,
    request: TrainRequest,
    train_rows: npt.NDArray[np.int64],
    start: int,
) -> tuple[str, ThresholdChoice, ThresholdChoice, ThresholdChoice]:
    """Full-path and truncated-rung thresholds on the latest validation fold (in-sample
    without one); partial-rung thresholds always from the final booster on its training
    window scored without store features: where missing features land differs from one
    booster to the next, so a fold booster's partial scores would not transfer (three
    features leave little to overfit in-sample)."""
    rows = data.df.iloc[train_rows]
    in_sample = EvalSet(
        transaction_id=rows["transaction_id"].to_numpy(),
        day=(rows["event_time_ms"].to_numpy(dtype=np.int64) - start) // DAY_MS,
        customer=rows["customer_id"].to_numpy(),
        y=data.y[train_rows].astype(bool),
        amount=rows["amount"].to_numpy(dtype=np.float64),
    )
    partial = choose_thresholds(
        in_sample, score_partial(booster, data.x[train_rows]), request.targets
    )
    if folds:
        latest = folds[0]
        return (
            f"validation fold starting {latest.train_start}",
            choose_thresholds(latest.eval_set, latest.scores, request.targets),
            partial,
            choose_thresholds(latest.eval_set, latest.truncated_scores, request.targets),
        )
    logger.warning("no validation fold fits before the training window: thresholds in-sample")
    x = data.x[train_rows]
    scores = np.asarray(booster.inplace_predict(x), dtype=np.float64)
    trees = default_truncation(booster.num_boosted_rounds())
    truncated = np.asarray(booster.inplace_predict(x, iteration_range=(0, trees)), np.float64)
    return (
        "training window (in-sample: no earlier data)",
        choose_thresholds(in_sample, scores, request.targets),
        partial,
        choose_thresholds(in_sample, truncated, request.targets),
    )


def _metrics(folds: list[FoldResult], k: int) -> dict[str, float | None]:
    return {
        "validation_average_precision": mean_of(folds, "average_precision"),
        "validation_roc_auc": mean_of(folds, "roc_auc"),
        f"validation_card_precision_at_{k}": mean_of(folds, "card_precision"),
        **{
            f"validation_{metric}_{rung}": mean_of(folds, f"{metric}_{rung}")
            for rung in (RUNG_TRUNCATED, RUNG_PARTIAL)
            for metric in ("average_precision", "roc_auc")
        },
        "validation_folds": float(len(folds)),
    }


def _fold_row(fold: FoldResult) -> dict[str, Any]:
    return {
        "train_start": fold.train_start,
        "average_precision": fold.average_precision,
        "roc_auc": fold.roc_auc,
        "card_precision": fold.card_precision,
        "trees": fold.trees,
        "transactions": int(fold.eval_set.y.size),
        "frauds": int(fold.eval_set.y.sum()),
    }
