"""The handbook generator: shape, determinism and the three fraud scenarios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.definitions import DAY_S
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.simulator import SimulatorConfig, simulate, summarize

SMALL = SimulatorConfig(n_customers=300, n_terminals=600, n_days=60, seed=3)
START_MS = 1_522_540_800_000  # 2018-04-01T00:00:00Z


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate(SMALL)


def test_columns_types_and_order(small: pd.DataFrame) -> None:
    assert list(small.columns) == [
        "transaction_id",
        "event_time_ms",
        "customer_id",
        "terminal_id",
        "amount",
        "is_fraud",
        "fraud_scenario",
    ]
    assert small["transaction_id"].tolist() == [str(i) for i in range(len(small))]
    assert small["event_time_ms"].dtype == np.int64
    assert small["amount"].dtype == np.float64
    assert bool(small["event_time_ms"].is_monotonic_increasing)


def test_times_stay_inside_the_period_on_whole_seconds(small: pd.DataFrame) -> None:
    ms = small["event_time_ms"].to_numpy()
    assert ms.min() > START_MS
    assert ms.max() < START_MS + 60 * DAY_S * 1000
    assert (ms % 1000 == 0).all()
    second_of_day = (ms - START_MS) // 1000 % DAY_S
    assert (second_of_day > 0).all()


def test_same_seed_same_data_other_seed_other_data(small: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate(SMALL), small)
    other = simulate(SimulatorConfig(n_customers=300, n_terminals=600, n_days=60, seed=4))
    assert not other["amount"].head(100).equals(small["amount"].head(100))


def test_amounts_are_cents_and_not_negative(small: pd.DataFrame) -> None:
    amount = small["amount"].to_numpy()
    assert (amount >= 0).all()
    legit = small["fraud_scenario"].to_numpy() != 3
    assert np.allclose(amount[legit] * 100, np.round(amount[legit] * 100))


def test_scenario_labels_match_is_fraud(small: pd.DataFrame) -> None:
    scen = small["fraud_scenario"].to_numpy()
    assert ((scen > 0) == (small["is_fraud"].to_numpy() == 1)).all()
    assert set(np.unique(scen)) == {0, 1, 2, 3}


def test_every_amount_above_220_is_fraud(small: pd.DataFrame) -> None:
    big = small["amount"].to_numpy() > 220
    assert (small["is_fraud"].to_numpy()[big] == 1).all()


def test_compromised_terminal_frauds_are_all_its_transactions_for_28_days(
    small: pd.DataFrame,
) -> None:
    day = (small["event_time_ms"].to_numpy() - START_MS) // (DAY_S * 1000)
    scen2 = small.loc[small["fraud_scenario"] == 2]
    terminal = scen2["terminal_id"].iloc[0]
    first = int(day[scen2.index[0]])
    on_terminal = small.loc[(small["terminal_id"] == terminal)]
    in_window = on_terminal.loc[
        (day[on_terminal.index] >= first) & (day[on_terminal.index] < first + 28)
    ]
    assert (in_window["is_fraud"] == 1).all()


def test_volume_and_fraud_shares_follow_the_parameters() -> None:
    df = simulate(SimulatorConfig(n_customers=1000, n_terminals=2000, n_days=90, seed=0))
    summary = summarize(df)
    assert summary.n_transactions == len(df)
    # 2 of 2000 terminals compromised per day for 28 days: about 2.8% of terminal-days
    assert 0.015 < summary.fraud_rate_by_scenario[2] < 0.04
    # 3 customers per day for 14 days, a third of their transactions: about 1.4%
    assert 0.007 < summary.fraud_rate_by_scenario[3] < 0.02
    assert summary.n_frauds == int(df["is_fraud"].sum())
    assert sum(summary.fraud_rate_by_scenario.values()) == pytest.approx(summary.fraud_rate)
    # about 2 transactions per customer per day on average (uniform(0, 4) per day)
    assert 1.7 < len(df) / (1000 * 90) < 2.3


def test_progress_is_reported_up_to_done() -> None:
    seen: list[tuple[str, float]] = []
    simulate(
        SimulatorConfig(n_customers=10, n_terminals=20, n_days=3), lambda s, f: seen.append((s, f))
    )
    assert seen[-1] == ("done", 1.0)
    fractions = [f for _s, f in seen]
    assert fractions == sorted(fractions)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n_days": 0}, "n_days"),
        ({"start_date": "April"}, "start_date"),
        ({"n_terminals": 1}, "compromised_terminals_per_day"),
    ],
)
def test_bad_config_is_a_config_error(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]
