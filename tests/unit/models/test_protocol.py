from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.exceptions import ConfigError
from fraudstream.models import protocol
from fraudstream.models.manifest import Thresholds

START = protocol.day_start_ms("2018-07-25")
DAY = protocol.DAY_MS
HOUR = 3_600_000


def toy() -> pd.DataFrame:
    """Train days 0-1, delay days 2-3, test days 4-6 (relative to 2018-07-25).

    A: fraud in the training window           -> excluded on every test day
    B: fraud on delay day 0                   -> excluded from test day 1
    C: fraud on delay day 1 at exactly 00:00  -> excluded from test day 2
    D: fraud only in the test period          -> never excluded
    E: fraud before the training window       -> never excluded
    """
    rows = [
        ("A", START + 1 * DAY + HOUR, 1),
        ("B", START + 2 * DAY + 5 * HOUR, 1),
        ("C", START + 3 * DAY, 1),
        ("D", START + 5 * DAY + HOUR, 1),
        ("E", START - 1 * DAY + HOUR, 1),
        ("B", START + HOUR, 0),
    ]
    for customer in "ABCDE":
        rows += [(customer, START + (4 + i) * DAY + 2 * HOUR, 0) for i in range(3)]
    rows.sort(key=lambda r: r[1])
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(len(rows))],
            "event_time_ms": np.array([r[1] for r in rows], dtype=np.int64),
            "customer_id": [r[0] for r in rows],
            "terminal_id": "T",
            "amount": 10.0,
            "is_fraud": [r[2] for r in rows],
        }
    )


def test_exclusions_follow_the_handbook_toy() -> None:
    df = toy()
    split = protocol.split(df, "2018-07-25", train_days=2, delay_days=2, test_days=3)
    kept = df.iloc[split.test_rows]
    got = sorted(zip(kept["customer_id"], split.test_day.tolist(), strict=True))
    assert got == [
        ("B", 0),
        ("C", 0),
        ("C", 1),
        ("D", 0),
        ("D", 1),
        ("D", 1),  # D's fraud is on test day 1
        ("D", 2),
        ("E", 0),
        ("E", 1),
        ("E", 2),
    ]
    assert split.excluded_rows == 6
    assert sorted(df.iloc[split.train_rows]["customer_id"]) == ["A", "B"]
    assert split.test_start_ms == START + 4 * DAY
    assert split.test_end_ms == START + 7 * DAY


def test_default_windows_are_seven_days() -> None:
    split = protocol.split(toy(), "2018-07-25")
    assert (split.train_end_ms - split.train_start_ms) // DAY == 7
    assert (split.test_start_ms - split.train_end_ms) // DAY == 7


def test_bad_dates_and_windows_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="dates must look like 2018-07-25, got '25/07/2018'"):
        protocol.split(toy(), "25/07/2018")
    with pytest.raises(ConfigError, match="need train_days >= 1"):
        protocol.split(toy(), "2018-07-25", train_days=0)


def test_evaluate_reports_every_metric() -> None:
    df = toy()
    split = protocol.split(df, "2018-07-25", train_days=2, delay_days=2, test_days=3)
    test = protocol.eval_set(df, split)
    scores = np.where(test.y, 0.9, 0.1)
    result = protocol.evaluate(test, scores, Thresholds(0.5, 0.8), k=1)
    assert result["roc_auc"] == 1.0
    assert result["average_precision"] == 1.0
    assert result["card_precision_at_1"] == pytest.approx((0 + 1 + 0) / 3)
    assert result["transactions"] == 10.0
    assert result["frauds"] == 1.0
    assert result["alert_rate"] == pytest.approx(1 / 10)
    assert result["recall_at_review"] == 1.0
    assert result["decline_precision"] == 1.0
    assert result["fraud_amount_caught"] == 10.0
