"""Issue 24, finding 2: a hot key's history is capped, the rows the cap changes are flagged
and every other row is exact; a long history is read by blocks with the same answers. In-
process store, a single Redis and a Redis Cluster alike."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features.customer_log import replay
from fraudstream.features.definitions import DAY_S, FEATURE_NAMES
from fraudstream.features.local_store import LocalStore
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.offline import compute_features
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.store import FLAG_CAPPED, TRIM_STEP
from tests.integration.features.stores import StoreFactory, batch, frame

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000
DAY = DAY_S * 1000
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
Row = tuple[str, str, str, int, float]


def _hot(n: int, per_day: int, seed: int = 0) -> list[Row]:
    """n transactions, every other one on customer 'hot' and terminal 'hot', in order."""
    rng = np.random.default_rng(seed)
    ms = T0 + np.sort(rng.integers(0, n * DAY // per_day, n))
    return [
        (f"x{i}", "hot" if i % 2 else f"c{i % 7}", "hot" if i % 2 else f"t{i % 5}", int(t), i % 90)
        for i, t in enumerate(ms.tolist())
    ]


def _history_records(store: object, key: str, head: int, size: int) -> int:
    if isinstance(store, MemoryStore):
        group = store._customers if key == "c" else store._terminals
        return len(group["hot"].hist.secs)
    if isinstance(store, LocalStore):
        if key == "c":  # what a process that reads the customer's log from Redis holds
            raw = store._redis._single_key_client().get(f"{store.prefix}:{{c:hot}}:log")
            return len(replay(raw, store._rules).hist.secs)
        store = store._redis
    assert isinstance(store, RedisStore)
    client = store._single_key_client()
    name = f"{store.prefix}:{{{key}:hot}}:{'h' if key == 'c' else 'w'}"
    return (int(client.strlen(name)) - head) // size


def test_a_capped_history_flags_the_rows_it_changes_and_no_other(
    make_store: StoreFactory,
) -> None:
    cap = 64
    rows = _hot(600, per_day=30)
    store = make_store(max_customer_records=cap, max_terminal_records=cap)
    out, flags = [], []
    for lo in range(0, len(rows), 25):
        got, f = store.apply_flagged(batch(rows[lo : lo + 25]))
        out.append(got)
        flags.append(f)
    online, flagged = np.vstack(out), np.concatenate(flags)
    offline = compute_features(frame(rows))
    plain = flagged == 0
    # from its 65th transaction on (row 129), the hot key's windows lack what the cap
    # dropped: those rows, and only those, are flagged
    assert np.flatnonzero(~plain).tolist() == list(range(129, 600, 2))
    assert set(flagged[~plain].tolist()) == {FLAG_CAPPED}
    np.testing.assert_allclose(online[plain], offline[plain], rtol=1e-12, atol=0)
    # a capped row counts at most the cap in any window
    assert online[~plain][:, COL["customer_nb_tx_30d"]].max() <= cap
    assert (online[~plain][:, COL["customer_nb_tx_30d"]] < offline[~plain][:, 7]).any()
    # held: the cap, plus records dropped but not yet rewritten (a quarter, in Redis)
    assert _history_records(store, "c", 320, 32) <= cap + max(TRIM_STEP, cap // 4) + 1
    assert _history_records(store, "t", 40, 8) <= cap + max(TRIM_STEP, cap // 4) + 1


def test_a_long_history_out_of_order_gives_the_in_process_answers(
    make_store: StoreFactory,
) -> None:
    # 3,000 transactions of one customer and one terminal over 20 days (the histories are
    # 36 KB and 12 KB: read by blocks), a fifth of them up to 18 hours late
    rows = _hot(6000, per_day=300, seed=1)
    rng = np.random.default_rng(2)
    late = rng.random(len(rows)) < 0.2
    rows = [
        (tx, c, t, ms - int(rng.integers(0, 18 * 3_600_000)) if late[i] else ms, a)
        for i, (tx, c, t, ms, a) in enumerate(rows)
    ]
    store, reference = make_store(), MemoryStore()
    for lo in range(0, len(rows), 200):
        part = batch(rows[lo : lo + 200])
        want, want_flags = reference.apply_flagged(part)
        got, got_flags = store.apply_flagged(part)
        np.testing.assert_array_equal(got_flags, want_flags)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert _history_records(store, "c", 320, 32) == 3000
    # in event-time order: as offline
    ordered = sorted(rows, key=lambda r: r[3])
    again = make_store()
    online = np.vstack([again.apply(batch(ordered[lo : lo + 500])) for lo in range(0, 6000, 500)])
    np.testing.assert_allclose(online, compute_features(frame(ordered)), rtol=1e-12, atol=0)
