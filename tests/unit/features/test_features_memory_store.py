"""The in-process store: the online semantics every store shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import DAY_S, FEATURE_NAMES
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.offline import compute_features
from fraudstream.features.replay import fraud_labels, replay
from fraudstream.features.schema import Label

T0 = 1_522_540_800_000
DAY = DAY_S * 1000
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
COUNTS = [i for i, name in enumerate(FEATURE_NAMES) if "_nb_tx_" in name]


def _batch(rows: list[tuple[str, str, str, int, float]]) -> TransactionBatch:
    """rows: (tx id, customer, terminal, ms, amount)."""
    return TransactionBatch.from_columns(*(list(col) for col in zip(*rows, strict=True)))


def _frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ms = T0 + rng.integers(0, 60 * 4, n) * (DAY // 4) + rng.integers(0, 3, n) * 400
    return pd.DataFrame(
        {
            "transaction_id": [f"x{i}" for i in range(n)],
            "event_time_ms": np.sort(ms),
            "customer_id": [f"c{k}" for k in rng.integers(0, 8, n)],
            "terminal_id": [f"t{k}" for k in rng.integers(0, 5, n)],
            "amount": rng.integers(0, 100_000, n) / 100,
            "is_fraud": (rng.random(n) < 0.15).astype(np.int8),
        }
    )


@pytest.mark.parametrize(("seed", "batch_size"), [(0, 1), (1, 7), (2, 500)])
def test_replay_equals_offline(seed: int, batch_size: int) -> None:
    df = _frame(seed, 600)
    online = replay(MemoryStore(), df, batch_size=batch_size)
    offline = compute_features(df)
    assert np.array_equal(online[:, COUNTS], offline[:, COUNTS])
    np.testing.assert_allclose(online, offline, rtol=1e-12, atol=0)


def test_late_arrival_sees_only_its_own_past() -> None:
    store = MemoryStore()
    store.apply(_batch([("late-in-time", "c", "t", T0 + 10_000, 4.0)]))
    early = store.apply(_batch([("early", "c", "t", T0, 2.0)]))
    assert early[0, COL["customer_nb_tx_1d"]] == 1  # the later one is not in (t - 1d, t]
    after = store.apply(_batch([("third", "c", "t", T0 + 20_000, 6.0)]))
    assert after[0, COL["customer_nb_tx_1d"]] == 3
    assert after[0, COL["customer_avg_amount_1d"]] == 4.0


def test_redelivery_is_idempotent_even_within_one_batch() -> None:
    store = MemoryStore()
    rows = [("a", "c", "t", T0, 1.0), ("a", "c", "t", T0, 1.0), ("b", "c", "t", T0 + 1, 3.0)]
    out = store.apply(_batch(rows))
    assert np.array_equal(out[0], out[1], equal_nan=True)
    assert out[2, COL["customer_nb_tx_1d"]] == 2
    assert np.array_equal(store.apply(_batch(rows[::-1])), out[::-1], equal_nan=True)


def test_labels_count_once_first_wins_and_only_after_the_delay() -> None:
    store = MemoryStore()
    store.apply(_batch([("f", "c", "T", T0, 1.0), ("g", "d", "T", T0, 1.0)]))
    assert store.apply_labels([Label("f", "c", "T", T0, T0 + 1, True)] * 3) == 1
    assert store.apply_labels([Label("g", "d", "T", T0, T0 + 1, False)]) == 1
    assert store.apply_labels([Label("g", "d", "T", T0, T0 + 2, True)]) == 0
    early = store.apply(_batch([("p", "e", "T", T0 + 7 * DAY - 1000, 1.0)]))
    at_delay = store.apply(_batch([("q", "e", "T", T0 + 7 * DAY, 1.0)]))
    assert early[0, COL["terminal_nb_tx_1d"]] == 0
    assert at_delay[0, COL["terminal_nb_tx_1d"]] == 2
    assert at_delay[0, COL["terminal_risk_1d"]] == 0.5


def test_offsets_only_move_forward() -> None:
    store = MemoryStore()
    store.apply(_batch([("a", "c", "t", T0, 1.0)]), offsets={0: 5})
    store.apply(_batch([("b", "c", "t", T0, 1.0)]), offsets={0: 3, 1: 2})
    assert store.applied_offsets() == {0: 5, 1: 2}
    assert store.applied_offsets("other") == {}


def test_history_beyond_the_horizon_is_dropped() -> None:
    store = MemoryStore()
    for i in range(100):
        store.apply(_batch([(f"x{i}", "c", "t", T0 + i * DAY, 1.0)]))
    day = [(T0 + i * DAY) // 1000 for i in range(100)]
    # one record a day, cut at the second-newest record minus 31 days (customer) or 38
    # (terminal) once 16 records are past it: the customer's last cut was at day 95
    # (second newest: day 94, cut at day 63), the terminal's at day 86 (cut at day 47)
    customer, terminal = store._customers["c"], store._terminals["t"]
    assert customer.hist.tt == day[63]
    assert customer.hist.secs == day[64:]
    assert terminal.hist.tt == day[47]
    assert terminal.hist.secs == day[48:]
    # stored vectors are forgotten by the week, once the history is trimmed past it
    assert min(customer.rows) == day[64] // (7 * DAY_S)
    kept = {tx for rows in customer.rows.values() for tx in rows}
    assert kept == {f"x{i}" for i in range(100) if day[i] // (7 * DAY_S) >= min(customer.rows)}


def test_fraud_labels_are_ordered_by_label_time() -> None:
    df = _frame(3, 200)
    feed = fraud_labels(df, delay_days=7)
    assert len(feed.labels) == int(df["is_fraud"].sum())
    assert list(feed.label_seconds) == sorted(feed.label_seconds)
    assert all(lab.label_time_ms - lab.event_time_ms == 7 * DAY for lab in feed.labels)
