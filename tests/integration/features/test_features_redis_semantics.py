"""The Redis store against the in-process reference: any order, redelivery, labels."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import DAY_S, FEATURE_NAMES
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.schema import Label

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _batch(rows: list[tuple[str, str, str, int, float]]) -> TransactionBatch:
    """rows: (tx id, customer, terminal, ms, amount)."""
    return TransactionBatch.from_columns(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )


def _random_rows(seed: int, n: int) -> list[tuple[str, str, str, int, float]]:
    rng = np.random.default_rng(seed)
    # within 30 days: no arrival is later than the retained horizon (31 days)
    ms = T0 + rng.integers(0, 30 * 8, n) * (DAY_S * 1000 // 8) + rng.integers(0, 2, n) * 300
    return [
        (
            f"x{i}",
            f"c{rng.integers(0, 5)}",
            f"t{rng.integers(0, 3)}",
            int(ms[i]),
            float(rng.integers(1, 100_000)) / 100,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_any_order_with_redeliveries_and_labels_matches_the_reference(
    redis_store: RedisStore, seed: int
) -> None:
    rng = np.random.default_rng(100 + seed)
    rows = _random_rows(seed, 400)
    order = rng.permutation(len(rows)).tolist()
    order += rng.choice(len(rows), 60).tolist()  # redeliveries, some of them much later
    memory = MemoryStore()
    start = 0
    while start < len(order):
        stop = start + int(rng.integers(1, 40))
        picked = [rows[i] for i in order[start:stop]]
        labels = [
            Label(r[0], r[1], r[2], r[3], r[3] + 1, bool(rng.random() < 0.5))
            for r in picked
            if rng.random() < 0.3
        ]
        assert redis_store.apply_labels(labels) == memory.apply_labels(labels)
        want = memory.apply(_batch(picked))
        got = redis_store.apply(_batch(picked))
        counts = [COL[n] for n in FEATURE_NAMES if "_nb_tx_" in n]
        assert np.array_equal(got[:, counts], want[:, counts])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
        start = stop


def test_redelivery_returns_the_first_vector_and_changes_nothing(redis_store: RedisStore) -> None:
    day = DAY_S * 1000
    first = _batch([("a", "c", "t", T0, 10.0), ("b", "c", "t", T0 + day // 2, 30.0)])
    vectors = redis_store.apply(first)
    # same transactions again, also inside a batch with a new one after them
    again = redis_store.apply(
        _batch([("b", "c", "t", T0 + day // 2, 30.0), ("a", "c", "t", T0, 10.0)])
    )
    assert np.array_equal(again, vectors[::-1], equal_nan=True)
    later = redis_store.apply(_batch([("c", "c", "t", T0 + day // 2 + 1000, 50.0)]))
    assert later[0, COL["customer_nb_tx_1d"]] == 3
    assert later[0, COL["customer_avg_amount_1d"]] == 30.0
    # a redelivery carrying other values still gets the first answer
    odd = redis_store.apply(_batch([("a", "zzz", "t", T0, 10.0)]))
    assert odd[0, COL["customer_nb_tx_1d"]] == 1.0


def test_duplicate_labels_count_once_and_the_first_one_wins(redis_store: RedisStore) -> None:
    d = 7 * DAY_S * 1000
    redis_store.apply(_batch([("f1", "c1", "T", T0, 1.0), ("f2", "c2", "T", T0 + 1000, 1.0)]))
    fraud = Label("f1", "c1", "T", T0, T0 + d, True)
    legit_first = Label("f2", "c2", "T", T0 + 1000, T0 + d, False)
    assert redis_store.apply_labels([fraud, fraud, legit_first]) == 2
    assert redis_store.apply_labels([fraud, Label("f2", "c2", "T", T0 + 1000, T0 + d, True)]) == 0
    out = redis_store.apply(_batch([("q", "c3", "T", T0 + d + 5000, 1.0)]))
    assert out[0, COL["terminal_nb_tx_1d"]] == 2
    assert out[0, COL["terminal_risk_1d"]] == 0.5


def test_late_label_counts_at_the_transaction_time(redis_store: RedisStore) -> None:
    d = 7 * DAY_S * 1000
    redis_store.apply(_batch([("f", "c1", "T", T0, 1.0)]))
    before = redis_store.apply(_batch([("p", "c2", "T", T0 + d + 1000, 1.0)]))
    assert before[0, COL["terminal_risk_7d"]] == 0.0
    assert redis_store.apply_labels([Label("f", "c1", "T", T0, T0 + 20 * DAY_S * 1000, True)]) == 1
    after = redis_store.apply(_batch([("q", "c3", "T", T0 + d + 2000, 1.0)]))
    assert after[0, COL["terminal_nb_tx_7d"]] == 1
    assert after[0, COL["terminal_risk_7d"]] == 1.0
