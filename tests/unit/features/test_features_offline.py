"""The vectorised offline features against a brute-force oracle, and at window edges."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.definitions import DAY_S, FEATURE_NAMES, FeatureConfig
from fraudstream.features.exceptions import DataFileError
from fraudstream.features.offline import compute_features

T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _frame(rows: list[tuple[int, str, str, float, int]]) -> pd.DataFrame:
    """rows: (ms, customer, terminal, amount, is_fraud)."""
    return pd.DataFrame(
        {
            "transaction_id": [str(i) for i in range(len(rows))],
            "event_time_ms": np.array([r[0] for r in rows], dtype=np.int64),
            "customer_id": [r[1] for r in rows],
            "terminal_id": [r[2] for r in rows],
            "amount": np.array([r[3] for r in rows], dtype=np.float64),
            "is_fraud": np.array([r[4] for r in rows], dtype=np.int8),
        }
    )


def _oracle(df: pd.DataFrame, config: FeatureConfig) -> np.ndarray:
    """Straight from the definition, one row at a time."""
    order = np.argsort(df["event_time_ms"].to_numpy(), kind="stable")
    rank = np.empty(len(df), dtype=int)
    rank[order] = np.arange(len(df))
    sec = df["event_time_ms"].to_numpy() // 1000
    cust, term = df["customer_id"].to_numpy(), df["terminal_id"].to_numpy()
    amount, fraud = df["amount"].to_numpy(), df["is_fraud"].to_numpy()
    out = np.zeros((len(df), config.n_features))
    for i in range(len(df)):
        row: list[float] = []
        means: list[float] = []
        for w in config.customer_windows_s:
            mine = [
                j
                for j in range(len(df))
                if cust[j] == cust[i] and rank[j] <= rank[i] and sec[i] - w < sec[j] <= sec[i]
            ]
            means.append(math.fsum(amount[mine]) / len(mine))
            row += [len(mine), means[-1]]
        for w in config.terminal_windows_s:
            hi = sec[i] - config.delay_s
            seen = [j for j in range(len(df)) if term[j] == term[i] and hi - w < sec[j] <= hi]
            row += [len(seen), (sum(fraud[seen]) / len(seen)) if seen else 0.0]
        row += [amount[i] / m if m > 0 else 1.0 for m in means]
        earlier = [j for j in mine if j != i]  # the widest window's, before row i
        row.append(_largest(amount[earlier]))
        row += _fraud_ages(sec[seen][fraud[seen] == 1], hi)
        out[i, 3:] = row
    out[:, 0] = amount
    return out


def _largest(earlier: np.ndarray) -> float:
    """The largest earlier amount, to the cent (NaN: none)."""
    cents = [round(x * 100) for x in earlier]
    return max(cents) / 100 if cents else math.nan


def _fraud_ages(fraud_secs: np.ndarray, reference: int) -> list[float]:
    if not len(fraud_secs):
        return [math.nan, math.nan]
    return [float(reference - fraud_secs.min()), float(reference - fraud_secs.max())]


def _random_frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Times on a coarse grid so equal seconds, exact window distances and same-second
    # pairs all occur; amounts in cents.
    ms = T0 + rng.integers(0, 45 * 4, n) * (DAY_S * 1000 // 4) + rng.integers(0, 3, n) * 400
    rows = [
        (
            int(ms[i]),
            f"c{rng.integers(0, 6)}",
            f"t{rng.integers(0, 4)}",
            float(rng.integers(0, 50_000)) / 100,
            int(rng.random() < 0.2),
        )
        for i in range(n)
    ]
    return _frame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_brute_force_oracle(seed: int) -> None:
    df = _random_frame(seed)
    config = FeatureConfig()
    got = compute_features(df, config)
    want = _oracle(df, config)
    counts = [COL[n] for n in FEATURE_NAMES if "_nb_tx_" in n]
    assert np.array_equal(got[:, counts], want[:, counts])
    np.testing.assert_allclose(got[:, 3:], want[:, 3:], rtol=1e-12, atol=0)


def test_unsorted_input_gives_each_row_its_own_features() -> None:
    df = _random_frame(3, n=200)
    shuffled = df.sample(frac=1.0, random_state=7)
    got = compute_features(shuffled)
    by_id = dict(zip(df["transaction_id"], compute_features(df), strict=True))
    for tid, row in zip(shuffled["transaction_id"], got, strict=True):
        # Ties in time are broken by table order, so rows sharing a second may differ.
        assert np.array_equal(row[[0, 9, 11, 13]], by_id[tid][[0, 9, 11, 13]])


def test_customer_window_is_half_open_at_one_second_resolution() -> None:
    day_ms = DAY_S * 1000
    df = _frame(
        [
            (T0, "a", "t", 10.0, 0),
            (T0 + day_ms, "a", "t", 20.0, 0),  # exactly 1 day later: first one left the 1d window
            (T0 + 2 * day_ms - 1000, "a", "t", 40.0, 0),  # 1 day - 1 s after the second
            (T0 + 2 * day_ms + 999, "a", "t", 80.0, 0),  # same second as 2 days after the first
        ]
    )
    out = compute_features(df)
    assert out[:, COL["customer_nb_tx_1d"]].tolist() == [1, 1, 2, 2]
    assert out[:, COL["customer_avg_amount_1d"]].tolist() == [10, 20, 30, 60]
    assert out[:, COL["customer_nb_tx_7d"]].tolist() == [1, 2, 3, 4]
    assert out[:, COL["customer_avg_amount_7d"]].tolist() == [10, 15, 70 / 3, 37.5]


def test_same_second_counts_earlier_rows_only_in_table_order() -> None:
    df = _frame([(T0 + 5, "a", "t", 1.0, 0), (T0 + 900, "a", "t", 3.0, 0), (T0, "b", "t", 7.0, 0)])
    out = compute_features(df)
    assert out[:, COL["customer_nb_tx_1d"]].tolist() == [1, 2, 1]
    assert out[:, COL["customer_avg_amount_1d"]].tolist() == [1, 2, 7]


def test_subsecond_gap_just_under_a_day_counts_as_a_full_day() -> None:
    # 86,399.001 s apart in real time, but 86,400 s apart at one-second resolution.
    df = _frame([(T0 + 999, "a", "t", 1.0, 0), (T0 + DAY_S * 1000, "a", "t", 2.0, 0)])
    assert compute_features(df)[:, COL["customer_nb_tx_1d"]].tolist() == [1, 1]


def test_terminal_window_ends_exactly_delay_days_back() -> None:
    d = 7 * DAY_S * 1000
    day = DAY_S * 1000
    df = _frame(
        [
            (T0, "x", "T", 5.0, 1),  # the fraud
            (T0 + d - 1000, "y", "T", 5.0, 0),  # d - 1 s later: not yet in its window
            (T0 + d, "z", "T", 5.0, 0),  # exactly d later: in its 1d window
            (T0 + d + day - 1000, "z", "T", 5.0, 0),  # d + 1d - 1 s: still in 1d
            (T0 + d + day, "z", "T", 5.0, 0),  # d + 1d: out of 1d, in 7d
            (T0 + d + 30 * day, "z", "T", 5.0, 0),  # d + 30d: the fraud just left the 30d window
        ]
    )
    out = compute_features(df)
    assert out[:, COL["terminal_nb_tx_1d"]].tolist() == [0, 0, 1, 1, 0, 0]
    assert out[:, COL["terminal_risk_1d"]].tolist() == [0, 0, 1, 1, 0, 0]
    assert out[:, COL["terminal_nb_tx_7d"]].tolist() == [0, 0, 1, 1, 1, 0]
    assert out[:, COL["terminal_nb_tx_30d"]].tolist() == [0, 0, 1, 1, 1, 4]
    # At d + 30d the window (t-37d, t-7d] = (T0, T0+30d] holds rows 1-4, not the fraud.
    assert out[5, COL["terminal_risk_30d"]] == 0.0


def test_terminal_risk_is_fraud_share_of_the_window() -> None:
    d = 7 * DAY_S * 1000
    rows = [(T0 + i * 1000, f"c{i}", "T", 1.0, int(i < 3)) for i in range(8)]
    rows.append((T0 + d + 10_000, "q", "T", 1.0, 0))
    out = compute_features(_frame(rows))
    assert out[-1, COL["terminal_nb_tx_1d"]] == 8
    assert out[-1, COL["terminal_risk_1d"]] == 3 / 8


def test_missing_is_fraud_means_no_known_labels() -> None:
    d = 7 * DAY_S * 1000
    df = _frame([(T0, "a", "T", 1.0, 1), (T0 + d, "b", "T", 1.0, 0)]).drop(columns="is_fraud")
    out = compute_features(df)
    assert out[1, COL["terminal_nb_tx_1d"]] == 1
    assert out[1, COL["terminal_risk_1d"]] == 0.0


def test_small_amounts_after_a_huge_history_stay_exact() -> None:
    rows = [(T0 + i * 1000, "a", "t", 1e6, 0) for i in range(5000)]
    rows += [(T0 + (31 * DAY_S + i) * 1000, "a", "t", 0.01, 0) for i in range(3)]
    out = compute_features(_frame(rows))
    assert out[-3:, COL["customer_nb_tx_1d"]].tolist() == [1, 2, 3]
    assert out[-3:, COL["customer_avg_amount_1d"]].tolist() == [0.01, 0.01, 0.01]
    assert out[-3:, COL["customer_avg_amount_30d"]].tolist() == [0.01, 0.01, 0.01]


def test_configured_windows_change_the_shape_and_bounds() -> None:
    config = FeatureConfig(customer_windows_days=(2,), terminal_windows_days=(1,), delay_days=1)
    day = DAY_S * 1000
    df = _frame(
        [(T0, "a", "T", 2.0, 1), (T0 + day, "a", "T", 4.0, 0), (T0 + 2 * day, "a", "T", 6.0, 0)]
    )
    out = compute_features(df, config)
    assert out.shape == (3, 11)
    assert out[:, 3].tolist() == [1, 2, 2]
    assert out[:, 4].tolist() == [2, 3, 5]
    assert out[:, 5].tolist() == [0, 1, 1]
    assert out[:, 6].tolist() == [0, 1, 0]
    assert out[:, 7].tolist() == [1, 4 / 3, 6 / 5]
    # one earlier amount at most in (t - 2 d, t]: the maximum is that amount
    np.testing.assert_array_equal(out[:, 8], [np.nan, 2, 4])
    # the fraud at T0 is in row 2's window (T0 - 1 d, T0] only, at its end
    np.testing.assert_array_equal(out[:, 9:], [[np.nan] * 2, [0, 0], [np.nan] * 2])


def test_empty_frame_gives_an_empty_matrix() -> None:
    assert compute_features(_frame([])).shape == (0, len(FEATURE_NAMES))


def test_missing_column_and_bad_amount_are_data_file_errors() -> None:
    df = _frame([(T0, "a", "T", 1.0, 0)])
    with pytest.raises(DataFileError, match="missing column.*terminal_id"):
        compute_features(df.drop(columns="terminal_id"))
    with pytest.raises(DataFileError, match="amount at row 0"):
        compute_features(df.assign(amount=[-1.0]))
