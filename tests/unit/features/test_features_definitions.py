"""Feature names, configuration and the per-transaction features."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from fraudstream.features.definitions import (
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    FeatureConfig,
    assemble_features,
    seconds,
    transaction_level_features,
)
from fraudstream.features.exceptions import ConfigError


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_feature_names_are_the_contract_in_order() -> None:
    assert FEATURE_NAMES == (
        "tx_amount",
        "tx_during_weekend",
        "tx_during_night",
        "customer_nb_tx_1d",
        "customer_avg_amount_1d",
        "customer_nb_tx_7d",
        "customer_avg_amount_7d",
        "customer_nb_tx_30d",
        "customer_avg_amount_30d",
        "terminal_nb_tx_1d",
        "terminal_risk_1d",
        "terminal_nb_tx_7d",
        "terminal_risk_7d",
        "terminal_nb_tx_30d",
        "terminal_risk_30d",
        "customer_amount_ratio_1d",
        "customer_amount_ratio_7d",
        "customer_amount_ratio_30d",
        "customer_max_amount_30d",
        "terminal_first_fraud_age_s_30d",
        "terminal_last_fraud_age_s_30d",
    )
    assert FeatureConfig().feature_names == FEATURE_NAMES
    assert FeatureConfig().feature_set_version == FEATURE_SET_VERSION == 4


def test_feature_names_follow_configured_windows() -> None:
    config = FeatureConfig(customer_windows_days=(2,), terminal_windows_days=(3, 14))
    assert config.feature_names == (
        "tx_amount",
        "tx_during_weekend",
        "tx_during_night",
        "customer_nb_tx_2d",
        "customer_avg_amount_2d",
        "terminal_nb_tx_3d",
        "terminal_risk_3d",
        "terminal_nb_tx_14d",
        "terminal_risk_14d",
        "customer_amount_ratio_2d",
        "customer_max_amount_2d",
        "terminal_first_fraud_age_s_14d",
        "terminal_last_fraud_age_s_14d",
    )


def test_schema_hash_is_stable_and_sensitive_to_every_part() -> None:
    base = FeatureConfig().schema_hash()
    assert base == FeatureConfig().schema_hash()
    assert len(base) == 64
    others = {
        FeatureConfig(customer_windows_days=(1, 7, 31)).schema_hash(),
        FeatureConfig(terminal_windows_days=(1, 7)).schema_hash(),
        FeatureConfig(delay_days=6).schema_hash(),
        FeatureConfig(tz="Europe/Paris").schema_hash(),
    }
    assert base not in others
    assert len(others) == 4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"customer_windows_days": (7, 1)}, "ascending"),
        ({"customer_windows_days": ()}, "non-empty"),
        ({"terminal_windows_days": (0, 7)}, ">= 1"),
        ({"terminal_windows_days": [1, 7]}, "tuple"),
        ({"delay_days": 0}, "at least 1"),
        ({"delay_days": 1.5}, "whole number"),
        ({"tz": "Mars/Olympus"}, "IANA"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_field(
    kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        FeatureConfig(**kwargs)  # type: ignore[arg-type]


def test_seconds_floor_also_before_the_epoch() -> None:
    assert seconds(np.array([0, 999, 1000, -1, -1000, -1001])).tolist() == [0, 0, 1, -1, -1, -2]


def test_weekend_and_night_in_utc() -> None:
    times = [
        "2018-04-06T23:59:59",  # Friday, 23h: neither
        "2018-04-07T00:00:00",  # Saturday 0h: weekend and night
        "2018-04-08T06:59:59",  # Sunday 6h: weekend, night (hour <= 6)
        "2018-04-08T07:00:00",  # Sunday 7h: weekend, day
        "2018-04-09T00:00:00",  # Monday 0h: night
    ]
    ms = np.array([_ms(t) for t in times])
    out = transaction_level_features(ms, np.array([1.5, 2, 3, 4, 5]))
    assert out[:, 0].tolist() == [1.5, 2, 3, 4, 5]
    assert out[:, 1].tolist() == [0, 1, 1, 1, 0]
    assert out[:, 2].tolist() == [0, 1, 1, 0, 1]


def test_weekend_and_night_in_a_configured_time_zone() -> None:
    # 2018-04-06T22:30Z is Saturday 00:30 in Paris (UTC+2 in summer).
    ms = np.array([_ms("2018-04-06T22:30:00"), _ms("2018-04-07T05:30:00")])
    utc = transaction_level_features(ms, np.zeros(2))
    paris = transaction_level_features(ms, np.zeros(2), FeatureConfig(tz="Europe/Paris"))
    assert utc[:, 1:].tolist() == [[0, 0], [1, 1]]
    assert paris[:, 1:].tolist() == [[1, 1], [1, 0]]


def test_assemble_divides_sums_and_frauds_and_zero_risk_when_empty() -> None:
    tx = np.array([[10.0, 0, 1]])
    out = assemble_features(
        tx,
        customer_counts=np.array([[1.0, 2, 4]]),
        customer_sums=np.array([[10.0, 30, 100]]),
        terminal_counts=np.array([[0.0, 4, 8]]),
        terminal_frauds=np.array([[0.0, 1, 2]]),
        amount_history=np.array([[4001.0]]),
        fraud_ages=np.array([[3600.0, 60]]),
    )
    ratios = [10 / 10, 10 / 15, 10 / 25]
    # the largest earlier amount of the 30-day window: 40.01 (4001 cents)
    expected = [10, 0, 1, 1, 10, 2, 15, 4, 25, 0, 0, 4, 0.25, 8, 0.25, *ratios, 40.01, 3600, 60]
    np.testing.assert_allclose(out[0], expected, rtol=1e-15, atol=0)


def test_amount_ratio_is_one_when_every_amount_in_the_window_is_zero() -> None:
    out = assemble_features(
        np.array([[0.0, 0, 0], [5.0, 0, 0]]),
        customer_counts=np.array([[3.0], [2.0]]),
        customer_sums=np.array([[0.0], [20.0]]),
        terminal_counts=np.array([[1.0], [1.0]]),
        terminal_frauds=np.array([[0.0], [1.0]]),
        amount_history=np.array([[0.0], [-1.0]]),
        fraud_ages=np.array([[10.0, 0], [-1.0, -1.0]]),
    )
    names = FeatureConfig(customer_windows_days=(1,), terminal_windows_days=(1,)).feature_names
    assert out.shape == (2, len(names))
    assert out[:, names.index("customer_amount_ratio_1d")].tolist() == [1.0, 0.5]
    top = names.index("customer_max_amount_1d")
    assert out[0, top] == 0.0  # earlier amounts of 0
    assert np.isnan(out[1, top])  # no earlier amount: no maximum
    ages = [
        names.index("terminal_first_fraud_age_s_1d"),
        names.index("terminal_last_fraud_age_s_1d"),
    ]
    assert out[0, ages].tolist() == [10.0, 0.0]
    assert np.isnan(out[1, ages]).all()  # no known fraud: no ages
    assert np.isfinite(np.delete(out, [top, *ages], axis=1)).all()


def test_schema_hash_covers_the_feature_set_version(monkeypatch: pytest.MonkeyPatch) -> None:
    config = FeatureConfig()
    assert config.describe() == {
        "feature_set_version": 4,
        "customer_windows_days": [1, 7, 30],
        "terminal_windows_days": [1, 7, 30],
        "delay_days": 7,
        "tz": "UTC",
    }
    before = config.schema_hash()
    monkeypatch.setattr("fraudstream.features.definitions.FEATURE_SET_VERSION", 5)
    assert config.describe()["feature_set_version"] == 5
    assert config.schema_hash() != before
