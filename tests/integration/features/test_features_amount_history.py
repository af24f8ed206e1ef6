"""The customer's maximum amount (feature set 4) where its Redis state is stressed: a
customer whose amounts only fall (every transaction stays one of its maxima, so the maxima
run grows long and is read by blocks, then loses its trimmed front), rows arriving late
among them (a maximum inserted before newer ones, the window scanned), and amounts beyond
the cents cap. In-process store, a single Redis and a Redis Cluster alike, against the
offline features."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from fraudstream.features.definitions import CENTS_CAP, FEATURE_NAMES
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.offline import compute_features
from fraudstream.features.redis_store import RedisStore
from tests.integration.features.stores import StoreFactory, batch, frame

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000
HOUR = 3_600_000
MAX = FEATURE_NAMES.index("customer_max_amount_30d")
SET_4 = [MAX]
Row = tuple[str, str, str, int, float]


def _falling(n: int) -> list[Row]:
    """One transaction of customer 'f' every 2.4 hours (300 in 30 days), each a cent below
    the one before; a customer 'big' with amounts over the cents cap in between."""
    rows: list[Row] = []
    for i in range(n):
        rows.append((f"f{i}", "f", f"t{i % 3}", T0 + i * 24 * HOUR // 10, (5_000 - i) / 100))
        if i % 20 == 0:
            big = 1e9 if i % 40 else CENTS_CAP / 100 + 7
            rows.append((f"b{i}", "big", "t9", T0 + i * 24 * HOUR // 10 + 1, big))
    return rows


def _maxima(store: object, customer: str) -> int:
    assert isinstance(store, RedisStore)
    client = store._single_key_client()
    return int(client.strlen(f"{store.prefix}:{{c:{customer}}}:m")) // 16


def test_falling_amounts_keep_every_record_a_maximum_and_stay_exact(
    make_store: StoreFactory,
) -> None:
    rows = _falling(600)  # 60 days
    store = make_store()
    online = np.vstack([store.apply(batch(rows[lo : lo + 64])) for lo in range(0, len(rows), 64)])
    offline = compute_features(frame(rows))
    assert np.array_equal(online[:, SET_4], offline[:, SET_4], equal_nan=True)
    np.testing.assert_allclose(online, offline, rtol=1e-12, atol=0)
    falling = np.array([r[1] == "f" for r in rows])
    # every earlier amount is larger: the maximum is the window's oldest, 299 records back
    # (the one 300 back is at t - 30 d exactly, out of the half-open window)
    assert online[falling][400:, MAX].tolist() == [(5_299 - i) / 100 for i in range(400, 600)]
    assert (online[~falling][2:, MAX] == CENTS_CAP / 100).all()  # capped cents
    if isinstance(store, RedisStore):
        # 300 maxima in the last 30 days: 16 in the history's header, the rest spilled, and
        # those out of every window go in steps
        assert 284 <= _maxima(store, "f") <= 284 + 64 + 284 // 3


def test_late_rows_among_falling_amounts_get_the_in_process_answers(
    make_store: StoreFactory,
) -> None:
    rng = np.random.default_rng(3)
    rows = _falling(500)
    late = rng.random(len(rows)) < 0.15
    rows = [
        (tx, c, t, ms - int(rng.integers(1, 18 * HOUR)) if late[i] else ms, a * (1 + late[i]))
        for i, (tx, c, t, ms, a) in enumerate(rows)
    ]
    store, reference = make_store(), MemoryStore()
    for lo in range(0, len(rows), 50):
        part = batch(rows[lo : lo + 50])
        want, want_flags = reference.apply_flagged(part)
        got, got_flags = store.apply_flagged(part)
        np.testing.assert_array_equal(got_flags, want_flags)
        assert np.array_equal(got[:, SET_4], want[:, SET_4], equal_nan=True)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # the late rows, at twice the amount, end maxima before them: the last 30 days' maximum
    # is one of them
    doubled = {
        a for (_, c, _, _, a), is_late in zip(rows, late, strict=True) if is_late and c == "f"
    }
    probe = batch([("probe", "f", "t0", max(r[3] for r in rows) + 1_000, 1.0)])
    got, want = store.apply(probe), reference.apply(probe)
    assert np.array_equal(got, want, equal_nan=True)
    assert float(got[0, MAX]) in doubled
    if isinstance(store, RedisStore):
        client: redis.Redis = store._single_key_client()
        assert client.pttl(f"{store.prefix}:{{c:f}}:m") > 0  # spilled, with a TTL
