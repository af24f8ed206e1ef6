from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.models import metrics


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (pos.size * neg.size)


def brute_ap(y: np.ndarray, s: np.ndarray) -> float:
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(s.tolist()), reverse=True):
        flagged = s >= threshold
        recall = y[flagged].sum() / y.sum()
        total += (recall - previous_recall) * y[flagged].mean()
        previous_recall = recall
    return total


labels_and_scores = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),  # few values: many ties
    )
)


@settings(max_examples=60, deadline=None)
@given(labels_and_scores)
def test_auc_and_ap_match_their_definitions(data: tuple[list[int], list[int]]) -> None:
    y, s = np.array(data[0]), np.array(data[1]) / 5.0
    if 0 < y.sum() < y.size:
        assert metrics.roc_auc(y, s) == pytest.approx(brute_auc(y, s))
    if y.sum() > 0:
        assert metrics.average_precision(y, s) == pytest.approx(brute_ap(y, s))


def test_hand_computed_auc_and_ap() -> None:
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    assert metrics.roc_auc(y, s) == pytest.approx(3 / 4)
    assert metrics.average_precision(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_undefined_metrics_are_nan() -> None:
    assert np.isnan(metrics.roc_auc([1, 1], [0.1, 0.2]))
    assert np.isnan(metrics.average_precision([0, 0], [0.1, 0.2]))
    assert np.isnan(metrics.precision_at_threshold([1], [0.1], 0.5))
    with pytest.raises(ValueError, match="1-D of equal length"):
        metrics.roc_auc([1, 0], [0.5])


# Day 0: c1 max .9 (has a fraud at .2), c2 .8 clean, c3 .7 fraud, c4 .1 fraud.
# Top 2 = c1 (fraud), c2 -> 1/2; c1 is detected.
# Day 1: c1 removed; c3 .6 fraud, c4 .5 clean, c5 .5 fraud (tie with c4: c4 first).
# Top 2 = c3 (fraud), c4 -> 1/2. Without removal: c1 .95 fraud, c3 -> 2/2.
TOY_DAY = [0, 0, 0, 0, 0, 1, 1, 1, 1]
TOY_CUSTOMER = ["c1", "c1", "c2", "c3", "c4", "c1", "c3", "c4", "c5"]
TOY_FRAUD = [0, 1, 0, 1, 1, 1, 1, 0, 1]
TOY_SCORE = [0.9, 0.2, 0.8, 0.7, 0.1, 0.95, 0.6, 0.5, 0.5]


def test_card_precision_at_k_matches_the_hand_computed_toy() -> None:
    result = metrics.card_precision_at_k(TOY_DAY, TOY_CUSTOMER, TOY_FRAUD, TOY_SCORE, k=2)
    assert result.per_day == (0.5, 0.5)
    assert result.compromised_per_day == (3, 2)
    assert result.mean == 0.5


def test_card_precision_without_removal_counts_detected_customers_again() -> None:
    result = metrics.card_precision_at_k(
        TOY_DAY, TOY_CUSTOMER, TOY_FRAUD, TOY_SCORE, k=2, remove_detected=False
    )
    assert result.per_day == (0.5, 1.0)
    assert result.mean == 0.75


def test_card_precision_divides_by_k_even_with_fewer_customers() -> None:
    result = metrics.card_precision_at_k([0, 0], [1, 2], [1, 0], [0.9, 0.1], k=100)
    assert result.per_day == (0.01,)


def test_threshold_metrics() -> None:
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.4, 0.2, 0.1])
    amount = np.array([100.0, 5.0, 50.0, 1.0, 10.0])
    assert metrics.alert_rate(s, 0.4) == 3 / 5
    assert metrics.recall_at_threshold(y, s, 0.4) == 2 / 3
    assert metrics.precision_at_threshold(y, s, 0.4) == 2 / 3
    assert metrics.fraud_amount_caught(y, s, amount, 0.4) == (150.0, 150.0 / 160.0)


def test_calibration_ratio_and_expected_calibration_error() -> None:
    y = np.array([1, 0, 0, 0, 1, 0])
    s = np.array([0.95, 0.05, 0.05, 0.15, 0.35, 0.25])
    assert metrics.calibration_ratio(y, s) == pytest.approx(1.8 / 2)
    # bins: [0.0, 0.1) holds 0.05, 0.05 (no fraud); [0.1, 0.2) 0.15; [0.2, 0.3) 0.25;
    # [0.3, 0.4) 0.35 (a fraud); [0.9, 1.0] 0.95 (a fraud)
    gaps = [abs(0.1 - 0), abs(0.15 - 0), abs(0.25 - 0), abs(0.35 - 1), abs(0.95 - 1)]
    assert metrics.expected_calibration_error(y, s) == pytest.approx(sum(gaps) / 6)
    assert metrics.expected_calibration_error(y.astype(bool), s == s) == pytest.approx(4 / 6)
    assert np.isnan(metrics.calibration_ratio([0, 0], [0.1, 0.2]))
    assert np.isnan(metrics.expected_calibration_error([], []))
