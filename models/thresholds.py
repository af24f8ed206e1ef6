"""Choosing the review and decline thresholds on validation scores.

Review: about ``review_customers_per_day`` customers a day, the workload of the review
team; the threshold is the median over validation days of the day's k-th highest customer
score. Decline: the lowest threshold such that every threshold from the top down to it
(with at least ``min_decline_support`` transactions above it) keeps transaction precision
>= ``decline_precision``; when none does, decline is 1.0 (effectively off). Decline is
never below review.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.features.exceptions import ConfigError
from fraudstream.models.manifest import Thresholds
from fraudstream.models.metrics import FloatArray, per_customer
from fraudstream.models.protocol import EvalSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThresholdTargets:
    """Operating targets the thresholds are chosen for."""

    review_customers_per_day: int = 100
    """Customers a day the review team can look at."""
    decline_precision: float = 0.9
    """Minimum share of frauds among declined transactions."""
    min_decline_support: int = 10
    """Fewest validation transactions above a decline threshold for it to count."""

    def __post_init__(self) -> None:
        if self.review_customers_per_day < 1 or not 0 < self.decline_precision <= 1:
            msg = "need review_customers_per_day >= 1 and 0 < decline_precision <= 1, got "
            msg += f"{self.review_customers_per_day}, {self.decline_precision}"
            raise ConfigError(msg)


@dataclass(frozen=True)
class ThresholdChoice:
    """Chosen thresholds and how they behave on the validation data."""

    thresholds: Thresholds
    """The thresholds to store in the manifest."""
    detail: dict[str, Any]
    """Validation figures behind the choice (recorded in the manifest's provenance)."""


def choose_thresholds(
    validation: EvalSet, scores: npt.ArrayLike, targets: ThresholdTargets | None = None
) -> ThresholdChoice:
    """Pick review and decline thresholds for ``scores`` on ``validation``."""
    targets = targets or ThresholdTargets()
    values = np.asarray(scores, dtype=np.float64)
    review = review_threshold(validation, values, targets.review_customers_per_day)
    decline, precision, support = decline_threshold(validation.y, values, targets)
    decline = max(decline, review)
    detail = {
        "review_customers_per_day": _customers_per_day(validation, values, review),
        "decline_precision": precision,
        "decline_transactions": support,
        "targets": {
            "review_customers_per_day": targets.review_customers_per_day,
            "decline_precision": targets.decline_precision,
        },
    }
    return ThresholdChoice(Thresholds(review=review, decline=decline), detail)


def review_threshold(validation: EvalSet, scores: FloatArray, per_day: int) -> float:
    """Median over days of the day's ``per_day``-th highest customer score; when that score
    is tied with customers beyond the ``per_day``-th, the next higher score, so that a tie
    (coarse scores, e.g. without store features) never sends a whole block to review."""
    daily = []
    for day in np.unique(validation.day):
        rows = validation.day == day
        _, top, _ = per_customer(validation.customer[rows], scores[rows], validation.y[rows])
        ranked = np.sort(top)[::-1]
        value = ranked[min(per_day, ranked.size) - 1]
        if np.count_nonzero(ranked >= value) > per_day:
            higher = ranked[ranked > value]
            value = higher[-1] if higher.size else np.nextafter(value, np.inf)
        daily.append(value)
    if not daily:
        msg = "cannot choose thresholds: the validation window has no transactions"
        raise ConfigError(msg)
    return float(np.clip(np.median(daily), 0.0, 1.0))


def decline_threshold(
    y: npt.NDArray[np.bool_], scores: FloatArray, targets: ThresholdTargets
) -> tuple[float, float, int]:
    """(threshold, its validation precision, transactions at or above it)."""
    order = np.argsort(-scores, kind="mergesort")
    ranked, labels = scores[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    support = last_of_tie + 1
    precision = np.cumsum(labels)[last_of_tie] / support
    eligible = support >= targets.min_decline_support
    failing = np.flatnonzero(eligible & (precision < targets.decline_precision))
    stop = failing[0] if failing.size else support.size
    passing = np.flatnonzero(eligible[:stop])
    if passing.size == 0:
        logger.warning(
            "no decline threshold reaches precision %.2f with %d transactions; decline off",
            targets.decline_precision,
            targets.min_decline_support,
        )
        return 1.0, float("nan"), 0
    best = passing[-1]
    return float(ranked[last_of_tie[best]]), float(precision[best]), int(support[best])


def _customers_per_day(validation: EvalSet, scores: FloatArray, threshold: float) -> float:
    flagged = scores >= threshold
    counts = [
        np.unique(validation.customer[(validation.day == d) & flagged]).size
        for d in np.unique(validation.day)
    ]
    return float(np.mean(counts)) if counts else float("nan")
