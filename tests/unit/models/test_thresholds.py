from __future__ import annotations

import logging

import numpy as np
import pytest

from fraudstream.models.protocol import EvalSet
from fraudstream.models.thresholds import ThresholdTargets, choose_thresholds


def validation(customers: list[str], days: list[int], frauds: list[int]) -> EvalSet:
    n = len(customers)
    return EvalSet(
        transaction_id=np.arange(n),
        day=np.array(days, dtype=np.int64),
        customer=np.array(customers),
        y=np.array(frauds, dtype=bool),
        amount=np.ones(n),
    )


def test_review_is_the_median_daily_kth_customer_and_decline_meets_precision() -> None:
    # day 0 customer maxima .99 .98 .97 .96 .5 -> 2nd highest .98
    # day 1 customer maxima .8 .6 .2           -> 2nd highest .6   => median .79
    test = validation(
        ["a", "b", "c", "d", "e", "e", "f", "g", "h"],
        [0, 0, 0, 0, 0, 0, 1, 1, 1],
        [1, 1, 1, 0, 0, 0, 0, 0, 0],
    )
    scores = np.array([0.99, 0.98, 0.97, 0.96, 0.5, 0.1, 0.8, 0.6, 0.2])
    targets = ThresholdTargets(review_customers_per_day=2, min_decline_support=2)
    choice = choose_thresholds(test, scores, targets)
    assert choice.thresholds.review == pytest.approx(0.79)
    # precision from the top: 1 (1 tx, too few), 1 (2), 1 (3), .75 (4) -> stop before .96
    assert choice.thresholds.decline == 0.97
    assert choice.detail["decline_precision"] == 1.0
    assert choice.detail["decline_transactions"] == 3
    assert choice.detail["review_customers_per_day"] == 2.5  # a b c d on day 0, f on day 1


def test_no_precise_enough_decline_turns_decline_off(caplog: pytest.LogCaptureFixture) -> None:
    test = validation(["a", "b", "c"], [0, 0, 0], [0, 1, 0])
    with caplog.at_level(logging.WARNING):
        choice = choose_thresholds(test, np.array([0.9, 0.5, 0.1]), ThresholdTargets(1, 0.9, 1))
    assert choice.thresholds.decline == 1.0
    assert "no decline threshold reaches precision 0.90" in caplog.text


def test_decline_is_never_below_review() -> None:
    test = validation(["a", "b", "c", "d"], [0, 0, 0, 0], [1, 1, 1, 1])
    choice = choose_thresholds(test, np.array([0.9, 0.8, 0.7, 0.6]), ThresholdTargets(1, 0.9, 1))
    assert choice.thresholds.review == 0.9
    assert choice.thresholds.decline == 0.9
