"""Evaluating a registered model on a test window of the handbook protocol."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.exceptions import ConfigError
from fraudstream.models import protocol
from fraudstream.models.dataset import features_until
from fraudstream.models.exceptions import TrainingError
from fraudstream.models.manifest import Manifest
from fraudstream.models.protocol import DAY_MS, EvalSet, Split
from fraudstream.models.scorer import Scorer
from fraudstream.models.validation import Progress

CHUNK_ROWS = 16_384


@dataclass(frozen=True)
class TestWindow:
    """Features and labels of a test window, after the protocol's exclusions."""

    __test__ = False  # not a pytest class

    x: npt.NDArray[np.float32]
    """Features of the kept test transactions."""
    eval_set: EvalSet
    """Their ids, days, customers, labels and amounts."""
    split: Split
    """The split they come from."""


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model on one test window, and the scores behind them."""

    version: str
    """Model version evaluated."""
    metrics: dict[str, float]
    """``fraudstream.models.protocol.evaluate`` output plus window facts."""
    transaction_id: npt.NDArray[np.generic]
    """Test transaction ids (after exclusions)."""
    scores: npt.NDArray[np.float64]
    """Their scores."""


def default_test_start(manifest: Manifest) -> str:
    """The first test day of a model's own protocol: training end plus the label delay."""
    end = datetime.fromisoformat(manifest.train_window.end).astimezone(UTC)
    return (end + timedelta(days=manifest.train_window.delay_days)).date().isoformat()


def load_test_window(
    df: pd.DataFrame,
    test_start: str,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
    config: FeatureConfig | None = None,
) -> TestWindow:
    """Features of ``[test_start, + test_days)`` with exclusions for the window before it."""
    config = config or FeatureConfig()
    if "is_fraud" not in df:
        msg = "the data has no is_fraud column: it cannot be evaluated (map one with --map)"
        raise ConfigError(msg)
    first_test = protocol.day_start_ms(test_start)
    train_start = first_test - (delay_days + train_days) * DAY_MS
    data = features_until(df, first_test + test_days * DAY_MS, config)
    split = protocol.split(
        data.df, protocol.iso_ms(train_start)[:10], train_days, delay_days, test_days
    )
    if split.test_rows.size == 0:
        msg = f"no test transactions in the {test_days} days from {test_start} "
        msg += "(after exclusions); pick a --test-start inside the data"
        raise TrainingError(msg)
    return TestWindow(data.x[split.test_rows], protocol.eval_set(data.df, split), split)


def score_all(
    scorer: Scorer,
    x: npt.NDArray[np.float32],
    trees: int | None = None,
    progress: Progress | None = None,
) -> npt.NDArray[np.float64]:
    """Scores of every row, in chunks of ``CHUNK_ROWS`` (each reported as ``"scoring"``)."""
    starts = range(0, len(x), CHUNK_ROWS)
    parts = []
    for done, i in enumerate(starts, start=1):
        parts.append(scorer.score(x[i : i + CHUNK_ROWS], trees))
        if progress is not None:
            progress("scoring", done, len(starts))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


def evaluate(
    scorer: Scorer, window: TestWindow, k: int = 100, progress: Progress | None = None
) -> Evaluation:
    """Every protocol metric of ``scorer`` on ``window``."""
    scores = score_all(scorer, window.x, progress=progress)
    result = protocol.evaluate(window.eval_set, scores, scorer.thresholds, k)
    result["excluded_transactions"] = float(window.split.excluded_rows)
    result["review_threshold"] = scorer.thresholds.review
    result["decline_threshold"] = scorer.thresholds.decline
    return Evaluation(scorer.version, result, window.eval_set.transaction_id, scores)


def write_predictions(path: Path, evaluation: Evaluation) -> None:
    """``transaction_id`` and ``score`` of every test transaction, as Parquet (atomic)."""
    frame = pd.DataFrame(
        {"transaction_id": evaluation.transaction_id.astype(str), "score": evaluation.scores}
    )
    write_atomically(path, lambda temp: frame.to_parquet(temp, index=False))


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temp_path)`` then move the temp file onto ``path``."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    finally:
        temp.unlink(missing_ok=True)
