"""Evaluation metrics in NumPy: ranking quality and the handbook's card precision at k.

Labels are 0/1 arrays, scores are probabilities (higher = more suspicious). Undefined
values (e.g. ROC AUC with one class only) are NaN rather than errors, so a report can
still be written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def roc_auc(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with one class."""
    labels, values = _pair(y, scores)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average_rank = upper - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][labels].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def average_precision(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Average precision, sum over thresholds of (R_n - R_{n-1}) P_n; NaN without a fraud.

    Equal scores form one threshold, as in scikit-learn's ``average_precision_score``.
    """
    labels, values = _pair(y, scores)
    if not labels.any():
        return float("nan")
    order = np.argsort(-values, kind="mergesort")
    ranked_values, ranked_labels = values[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked_values)), ranked_values.size - 1]
    true_pos = np.cumsum(ranked_labels)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


@dataclass(frozen=True)
class CardPrecision:
    """Card precision at k over a test period."""

    mean: float
    """Average of the daily values (the headline metric)."""
    per_day: tuple[float, ...]
    """Precision of the day's top-k customers, one per day in day order."""
    compromised_per_day: tuple[int, ...]
    """Compromised customers still eligible that day (after removals)."""


def card_precision_at_k(
    day: npt.ArrayLike,
    customer: npt.ArrayLike,
    y: npt.ArrayLike,
    scores: npt.ArrayLike,
    k: int = 100,
    remove_detected: bool = True,
) -> CardPrecision:
    """Handbook card precision at k, per day, averaged over the days present.

    Each day: drop customers detected on earlier days (when ``remove_detected``), take
    each customer's highest score and whether any of their transactions is a fraud, rank
    customers by that score (ties: lower customer id first), and count frauds in the top
    ``k`` divided by ``k``. The top-k frauds become detected for the following days.
    """
    days = np.asarray(day)
    customers = np.asarray(customer)
    labels, values = _pair(y, scores)
    detected = customers[:0]
    per_day: list[float] = []
    compromised: list[int] = []
    for current in np.unique(days):
        rows = (days == current) & ~np.isin(customers, detected)
        ids, top_score, fraud = per_customer(customers[rows], values[rows], labels[rows])
        order = np.lexsort((ids, -top_score))[:k]
        hits = ids[order][fraud[order]]
        per_day.append(hits.size / k)
        compromised.append(int(fraud.sum()))
        if remove_detected:
            detected = np.concatenate([detected, hits])
    mean = float(np.mean(per_day)) if per_day else float("nan")
    return CardPrecision(mean, tuple(per_day), tuple(compromised))


def per_customer(
    customers: npt.NDArray[np.generic], values: FloatArray, labels: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.generic], FloatArray, npt.NDArray[np.bool_]]:
    ids, inverse = np.unique(customers, return_inverse=True)
    top_score = np.full(ids.size, -np.inf)
    np.maximum.at(top_score, inverse, values)
    fraud = np.zeros(ids.size, dtype=bool)
    np.logical_or.at(fraud, inverse, labels)
    return ids, top_score, fraud


def alert_rate(scores: npt.ArrayLike, threshold: float) -> float:
    """Share of transactions scored at or above ``threshold``."""
    values = np.asarray(scores, dtype=np.float64)
    return float(np.mean(values >= threshold)) if values.size else float("nan")


def recall_at_threshold(y: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> float:
    """Share of frauds scored at or above ``threshold``; NaN without a fraud."""
    labels, values = _pair(y, scores)
    if not labels.any():
        return float("nan")
    return float(np.mean(values[labels] >= threshold))


def precision_at_threshold(y: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> float:
    """Share of frauds among transactions at or above ``threshold``; NaN when none is."""
    labels, values = _pair(y, scores)
    flagged = values >= threshold
    if not flagged.any():
        return float("nan")
    return float(np.mean(labels[flagged]))


def fraud_amount_caught(
    y: npt.ArrayLike, scores: npt.ArrayLike, amount: npt.ArrayLike, threshold: float
) -> tuple[float, float]:
    """Fraud amount at or above ``threshold``: (amount, share of all fraud amount)."""
    labels, values = _pair(y, scores)
    amounts = np.asarray(amount, dtype=np.float64)
    caught = float(amounts[labels & (values >= threshold)].sum())
    total = float(amounts[labels].sum())
    return caught, (caught / total if total > 0 else float("nan"))


def calibration_ratio(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Sum of the scores over the number of frauds: 1 when the scores, read as
    probabilities, expect as many frauds as there are; NaN without a fraud."""
    labels, values = _pair(y, scores)
    frauds = int(labels.sum())
    return float(values.sum() / frauds) if frauds else float("nan")


def expected_calibration_error(y: npt.ArrayLike, scores: npt.ArrayLike, bins: int = 10) -> float:
    """Mean over ``bins`` equal-width score bins, weighted by their transactions, of
    |mean score - fraud rate|: how far a score is from the share of frauds it stands for."""
    labels, values = _pair(y, scores)
    if not values.size:
        return float("nan")
    which = np.clip((values * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    score_sums = np.bincount(which, weights=values, minlength=bins)
    fraud_sums = np.bincount(which, weights=labels.astype(np.float64), minlength=bins)
    return float(np.abs(score_sums - fraud_sums).sum() / counts.sum())


def _pair(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    labels = np.asarray(y).astype(bool)
    values = np.asarray(scores, dtype=np.float64)
    if labels.shape != values.shape or labels.ndim != 1:
        msg = f"labels {labels.shape} and scores {values.shape} must be 1-D of equal length"
        raise ValueError(msg)
    return labels, values
