"""The latency planner: cost fitting, batch sizing against the tightest deadline, the ladder."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.stream.planner import (
    RUNG_FULL,
    RUNG_PARTIAL,
    RUNG_RULES,
    RUNG_TRUNCATED,
    Planner,
    StageCost,
)


def test_stage_cost_recovers_a_linear_cost_exactly() -> None:
    cost = StageCost(fixed_s=1.0, per_record_s=1.0)
    for n in [1, 10, 100, 50, 7, 300, 64, 1000] * 5:
        cost.observe(n, 0.002 + 0.00001 * n)
    assert cost.fixed_s == pytest.approx(0.002, rel=1e-6)
    assert cost.per_record_s == pytest.approx(0.00001, rel=1e-6)
    assert cost.predict(100) == pytest.approx(0.003, rel=1e-3)


def test_stage_cost_with_constant_batch_size_keeps_the_per_record_prior() -> None:
    cost = StageCost(fixed_s=0.0, per_record_s=1e-5)
    for _ in range(20):
        cost.observe(100, 0.005)
    assert cost.per_record_s == 1e-5
    assert cost.predict_mean(100) == pytest.approx(0.005)


def _planner(per_record_s: float = 1e-4) -> Planner:
    planner = Planner(max_batch=1000)
    for stage in planner.costs.values():
        stage.fixed_s, stage.per_record_s = 0.0, 0.0
    planner.costs["features"].per_record_s = per_record_s
    planner.costs["score_full"].per_record_s = per_record_s
    planner.costs["score_truncated"].per_record_s = per_record_s / 10
    return planner


def test_batch_is_the_longest_prefix_the_tightest_deadline_allows() -> None:
    planner = _planner(per_record_s=1e-4)  # full path 0.2 ms per record
    slacks = np.full(5000, 1.0)
    slacks[0] = 0.02  # the oldest has 20 ms left: at most 100 records fit
    plan = planner.plan(slacks, 5000, has_model=True)
    assert plan.rung is RUNG_FULL
    assert plan.size == 100


def _fixed_cost_planner() -> Planner:
    planner = _planner(per_record_s=20e-6)  # 40 us a record on the full path
    planner.costs["features"].fixed_s = 0.004  # and 4 ms a batch
    return planner


def test_a_stream_falling_behind_is_taken_in_larger_batches() -> None:
    planner = _fixed_cost_planner()
    # 300 records from 6 ms to 20 ms of slack (about 21,000/s): batches of the 50 the
    # oldest allows (6 ms each) would hold every record behind them past its deadline
    slacks = np.linspace(0.006, 0.020, 300)
    plan = planner.plan(slacks, 300, has_model=True)
    assert (plan.rung, plan.size) == (RUNG_FULL, 300)  # 16 ms: the newest 86 make it


def test_small_batches_that_keep_up_stay_small() -> None:
    planner = _fixed_cost_planner()
    # the same 300 records from 6 ms to 50 ms of slack: batches of 50 (6 ms each) meet
    # every deadline, a larger first batch would miss the oldest
    slacks = np.linspace(0.006, 0.050, 300)
    assert planner.plan(slacks, 300, has_model=True).size == 50


def test_plenty_of_slack_takes_the_whole_buffer_up_to_max_batch() -> None:
    plan = _planner().plan(np.full(3000, 10.0), 3000, has_model=True)
    assert (plan.size, plan.rung) == (1000, RUNG_FULL)


def _quality(planner: Planner, truncated: float | None, partial: float | None) -> Planner:
    planner.set_quality({RUNG_TRUNCATED: truncated, RUNG_PARTIAL: partial})
    return planner


def test_truncated_rung_when_full_model_cannot_make_it() -> None:
    planner = _quality(_planner(per_record_s=1e-4), 0.9, 0.1)
    planner.costs["features"].per_record_s = 0.0
    planner.costs["score_full"].fixed_s = 0.010  # the full model costs 10 ms at least
    slacks = np.full(10, 0.005)
    plan = planner.plan(slacks, 10, has_model=True)
    assert plan.rung == RUNG_TRUNCATED
    assert plan.size == 10
    assert plan.store_timeout_s == planner.store_down_after_s  # a slow store is waited for


def test_never_degrade_keeps_the_full_path() -> None:
    planner = _quality(_planner(per_record_s=1e-4), 0.9, 0.9)
    planner.degrade = "never"
    planner.costs["score_full"].fixed_s = 0.010
    plan = planner.plan(np.full(10, 0.005), 10, has_model=True)
    assert (plan.rung, plan.size) == (RUNG_FULL, 10)


def test_a_truncated_rung_below_the_quality_floor_is_never_taken() -> None:
    planner = _quality(_planner(per_record_s=1e-4), 0.4, 0.9)
    planner.costs["score_full"].fixed_s = 0.010
    plan = planner.plan(np.full(10, 0.005), 10, has_model=True)
    assert plan.rung is RUNG_FULL  # late on the full path beats on time with a poor model
    planner.set_quality({RUNG_TRUNCATED: None})  # no thresholds for it: off
    assert planner.plan(np.full(10, 0.005), 10, has_model=True).rung is RUNG_FULL


def test_partial_features_are_never_chosen_to_meet_a_deadline() -> None:
    planner = _quality(_planner(per_record_s=1e-4), None, 1.0)  # even at full quality
    planner.costs["features"].fixed_s = 0.010  # a slow store
    plan = planner.plan(np.full(10, 0.005), 10, has_model=True)
    assert plan.rung is RUNG_FULL and plan.store_timeout_s == planner.store_down_after_s


def test_late_records_take_the_full_path_and_bound_nothing() -> None:
    planner = _quality(_planner(per_record_s=1e-4), 0.9, 0.6)
    slacks = np.array([-0.5, -0.1, 5.0, 5.0])
    plan = planner.plan(slacks, 4, has_model=True)
    assert (plan.rung, plan.size) == (RUNG_FULL, 4)
    backlog = planner.plan(np.full(3000, -1.0), 3000, has_model=True)
    assert (backlog.rung, backlog.size) == (RUNG_FULL, 1000)  # a late backlog: full batches


def test_records_behind_a_late_head_bound_the_batch() -> None:
    planner = _quality(_planner(per_record_s=1e-4), None, None)  # full path 0.2 ms per record
    slacks = np.concatenate([np.full(50, -1.0), np.full(500, 0.02)])
    plan = planner.plan(slacks, 550, has_model=True)
    assert (plan.rung, plan.size) == (RUNG_FULL, 100)


def test_no_model_means_rules_and_no_deadline_means_full() -> None:
    planner = _planner()
    assert planner.plan(np.ones(3), 3, has_model=False).rung == RUNG_RULES
    assert planner.plan(None, 3, has_model=True).rung is RUNG_FULL
    assert planner.plan(None, 0, has_model=True).size == 0


def test_costly_store_records_split_a_late_backlog_below_the_outage_bound() -> None:
    planner = _planner()  # max_batch 1000, the store counts as down after 1 s
    late = np.full(3000, -1.0)
    assert planner.plan(late, 3000, has_model=True).size == 1000
    planner.observe("features", 1000, 0.65)  # 0.65 ms a record: deep out-of-order inserts
    size = planner.plan(late, 3000, has_model=True).size
    assert 400 <= size <= 1000 * planner.store_share / 0.65
    assert planner.plan(None, 3000, has_model=True).size == size  # a backtest too
    assert planner.plan(late, 3000, has_model=False).size == 1000  # rules call no store


def test_a_store_timeout_shrinks_the_next_batches() -> None:
    planner = _planner()
    planner.observe_store_timeout(1000)
    first = planner.plan(np.full(3000, -1.0), 3000, has_model=True).size
    assert first <= 1000 * planner.store_share
    for _ in range(20):  # the store is fast again: batches grow back to max_batch
        planner.observe("features", 100, 0.005)
    assert planner.plan(np.full(3000, -1.0), 3000, has_model=True).size == 1000
