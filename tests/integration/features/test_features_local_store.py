"""Customer state held by the scoring process (``LocalStore``, issue 23): what the design
adds as failure modes, each against the in-process store fed the same transactions in one
process. Two processes writing one customer (on one Redis server and on a Redis Cluster), a
restart that reads the logs back, a log rewritten as a snapshot, an id claimed by another
process's customer, a corrupt log, the other layout on the same prefix, and a store call
whose reply was lost."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from fraudstream.features.customer_log import SNAPSHOT, replay
from fraudstream.features.definitions import DAY_S
from fraudstream.features.exceptions import ConfigError, FeatureStoreUnavailable
from fraudstream.features.local_store import LocalStore
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.schema import Label
from fraudstream.features.store import FLAG_CONFLICT
from tests.cluster_infra import LocalCluster, redis_cluster  # noqa: F401 (fixture)
from tests.integration.features.stores import batch

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000
Row = tuple[str, str, str, int, float]


def _stream(n: int, days: int, customers: int = 6, seed: int = 0) -> list[Row]:
    """n transactions over ``days``, a few customers and terminals, mostly in event-time
    order with some a few hours late, and some redelivered."""
    rng = np.random.default_rng(seed)
    ms = np.sort(rng.integers(0, days * DAY_S * 1000, n)) + T0
    late = rng.random(n) < 0.05
    ms[late] -= rng.integers(0, 6 * 3_600_000, int(late.sum()))
    rows = [
        (f"x{i}", f"c{rng.integers(customers)}", f"t{rng.integers(4)}", int(t), float(a))
        for i, (t, a) in enumerate(zip(ms.tolist(), np.round(rng.gamma(2, 30, n), 2), strict=True))
    ]
    again = rng.choice(n, n // 50, replace=False)
    for j in sorted(again.tolist(), reverse=True):
        rows.insert(min(j + 5, len(rows)), rows[j])
    return rows


def _labels(rows: list[Row], every: int) -> list[Label]:
    return [Label(tx, c, t, ms, ms + 7 * DAY_S * 1000, True) for tx, c, t, ms, _ in rows[::every]]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def local_factory(redis_url: str, prefix: str) -> Iterator[type[LocalStore]]:
    """``make(**limits)``: a new process's store on the test's prefix."""
    made: list[LocalStore] = []

    def make(**limits: int) -> LocalStore:
        store = LocalStore.from_url(redis_url, prefix=prefix, **limits)
        made.append(store)
        return store

    yield make  # type: ignore[misc]
    made[0].drop()
    for store in made:
        store.close()


def _both(
    stores: list[LocalStore], reference: MemoryStore, rows: list[Row], size: int
) -> np.ndarray:
    """Batches of ``rows`` to the stores in turn and to the reference: equal answers,
    returned."""
    out = []
    for k, lo in enumerate(range(0, len(rows), size)):
        part = batch(rows[lo : lo + size])
        got, flags = stores[k % len(stores)].apply_flagged(part)
        want, want_flags = reference.apply_flagged(part)
        np.testing.assert_array_equal(flags, want_flags)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
        out.append(got)
    return np.concatenate(out)


def test_two_processes_writing_the_same_customers_stay_exact(local_factory) -> None:  # noqa: ANN001
    rows = _stream(1_500, days=45)
    reference = MemoryStore()
    first, second = local_factory(), local_factory()
    _both([first, second], reference, rows, size=37)
    # each process saw the other's appends through its checks and read the logs again
    assert first.retries > 0 and second.retries > 0


def test_a_restarted_process_continues_from_the_logs(local_factory) -> None:  # noqa: ANN001
    rows = _stream(1_200, days=40, seed=1)
    reference = MemoryStore()
    before = local_factory()
    first = _both([before], reference, rows[:700], size=50)
    after = local_factory()  # a new process: holds nothing, reads each customer's log
    assert after.held == 0
    _both([after], reference, rows[700:], size=50)
    # a redelivery of what the first process applied (days before: nothing trimmed it)
    # gets the first answer back
    np.testing.assert_array_equal(after.apply(batch(rows[600:700])), first[600:700])


def test_a_bounded_process_reads_back_what_it_dropped(local_factory) -> None:  # noqa: ANN001
    rows = _stream(800, days=30, customers=9, seed=8)
    reference = MemoryStore()
    store = local_factory(max_customers=2)  # fewer than a batch holds: those stay
    _both([store], reference, rows, size=40)
    assert 2 <= store.held <= 9


def test_labels_reach_the_terminals_the_logs_stand_beside(local_factory) -> None:  # noqa: ANN001
    rows = _stream(900, days=30, seed=2)
    reference = MemoryStore()
    store = local_factory()
    labels = _labels(rows, every=9)
    assert store.apply_labels(labels[:40]) == reference.apply_labels(labels[:40])
    _both([store], reference, rows, size=64)


def test_a_long_log_becomes_a_snapshot_and_reads_back_the_same(
    local_factory,
    raw_redis: redis.Redis,
    prefix: str,  # noqa: ANN001
) -> None:
    rows = _stream(2_000, days=90, customers=2, seed=3)
    reference = MemoryStore()
    store = local_factory()
    _both([store], reference, rows, size=64)
    held = store._customers["c0"]
    raw = raw_redis.get(f"{prefix}:{{c:c0}}:log")
    assert raw is not None and raw[4:5] == SNAPSHOT  # rewritten, then appended to
    assert held.entries < len(rows) // 2
    back = replay(raw, store._rules)
    assert back.hist == held.hist
    assert back.rows == held.rows
    # a new process reading the snapshot goes on exactly
    _both([local_factory()], reference, _stream(200, days=2, customers=2, seed=4), size=20)


def test_an_id_another_process_applied_for_another_customer_is_a_conflict(
    local_factory,  # noqa: ANN001
) -> None:
    one, two = local_factory(), local_factory()
    reference = MemoryStore()
    history = [(f"h{i}", "c2", "t", T0 + i * 3_600_000, 10.0) for i in range(4)]
    first = ("x", "c1", "t", T0 + 5 * 3_600_000, 10.0)
    copy = ("x", "c2", "t", T0 + 6 * 3_600_000, 99.0)
    for store in (two, reference):
        store.apply(batch(history))
    one.apply(batch([first]))
    reference.apply(batch([first]))
    got, flags = two.apply_flagged(batch([copy]))
    want, want_flags = reference.apply_flagged(batch([copy]))
    assert flags.tolist() == want_flags.tolist() == [FLAG_CONFLICT]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # the copy changed nothing of c2
    probe = batch([("p", "c2", "t", T0 + 7 * 3_600_000, 1.0)])
    np.testing.assert_allclose(two.apply(probe), reference.apply(probe), rtol=1e-12, atol=0)


def test_a_corrupt_log_is_an_error_naming_its_key(
    local_factory,
    raw_redis: redis.Redis,
    prefix: str,  # noqa: ANN001
) -> None:
    store = local_factory()
    store.apply(batch([("a", "c", "t", T0, 1.0)]))
    raw_redis.set(f"{prefix}:{{c:bad}}:log", b"\x05\x00\x00\x00Zjunk")
    with pytest.raises(FeatureStoreUnavailable, match=r"c:bad\}:log.*unknown kind"):
        store.apply(batch([("b", "bad", "t", T0, 1.0)]))
    raw_redis.set(f"{prefix}:{{c:cut}}:log", b"\xff\x00\x00\x00A")
    with pytest.raises(FeatureStoreUnavailable, match=r"c:cut\}:log.*says 255 bytes"):
        store.apply(batch([("b", "cut", "t", T0, 1.0)]))


def test_a_prefix_of_the_other_layout_is_refused(redis_url: str, prefix: str) -> None:
    legacy = RedisStore.from_url(redis_url, prefix=prefix)
    legacy.apply(batch([("a", "c", "t", T0, 1.0)]))
    local = LocalStore.from_url(redis_url, prefix=prefix)
    try:
        with pytest.raises(ConfigError, match="key layout 6 .*writes layout 6L"):
            local.apply(batch([("b", "c", "t", T0, 1.0)]))
    finally:
        legacy.drop()
        legacy.close()
        local.close()


def test_two_processes_on_a_redis_cluster_stay_exact(
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    first = LocalStore.from_url(redis_cluster.url, prefix=prefix)
    second = LocalStore.from_url(redis_cluster.url, prefix=prefix)
    try:
        reference = MemoryStore()
        rows = _stream(1_200, days=45, seed=6)
        labels = _labels(rows, every=11)
        assert first.apply_labels(labels[:30]) == reference.apply_labels(labels[:30])
        _both([first, second], reference, rows, size=41)
        assert first.retries > 0 and second.retries > 0
        # a third process reads every customer's log from the nodes holding them
        _both(
            [LocalStore.from_url(redis_cluster.url, prefix=prefix)],
            reference,
            _stream(200, days=2, seed=7),
            size=50,
        )
    finally:
        first.drop()
        first.close()
        second.close()


@pytest.mark.parametrize("pause_ms", [300, 0], ids=["reply-lost", "no-pause"])
def test_a_call_whose_reply_was_lost_is_retried_without_counting_twice(
    redis_server_factory,
    pause_ms: int,  # noqa: ANN001
) -> None:
    server = redis_server_factory()
    rows = _stream(400, days=20, seed=5)
    reference = MemoryStore()
    store = LocalStore.from_url(server.url, prefix="lost", socket_timeout_s=0.1)
    admin = redis.Redis.from_url(server.url)
    try:
        _both([store], reference, rows[:200], size=50)
        part = batch(rows[200:250])
        if pause_ms:
            admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
            with pytest.raises(FeatureStoreUnavailable):
                store.apply(part)
            time.sleep(pause_ms / 1000 + 0.2)  # the call may run once the pause ends
        # the caller retries the batch: the same answers as one application, and after
        _both([store], reference, rows[200:250], size=50)
        _both([store], reference, rows[250:], size=50)
    finally:
        admin.close()
        store.close()
