"""Running the Redis store: outages, timeouts, credentials, offsets, retries, memory."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import DAY_S, FeatureConfig
from fraudstream.features.exceptions import ConfigError, FeatureStoreUnavailable
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.redis_batches import numbers_of, single_calls
from fraudstream.features.redis_calls import CHUNK_SIZE
from fraudstream.features.redis_scripts import rows_keys
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.features.store import fingerprints

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000


def _one(tx_id: str = "a", customer: str = "c", ms: int = T0) -> TransactionBatch:
    return TransactionBatch.from_columns([tx_id], [customer], ["t"], [ms], [1.0])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


def test_stopped_redis_is_unavailable_at_once(
    redis_server_factory: Callable[..., Any],
) -> None:
    server = redis_server_factory()
    store = RedisStore.from_url(server.url, prefix="p", socket_timeout_s=0.5)
    assert store.apply(_one()).shape == (1, FeatureConfig().n_features)
    server.stop()
    started = time.monotonic()
    with pytest.raises(FeatureStoreUnavailable, match="unavailable"):
        store.apply(_one("b"))
    with pytest.raises(FeatureStoreUnavailable):
        store.applied_offsets()
    assert time.monotonic() - started < 1.0
    store.close()


def test_a_server_that_never_answers_times_out(silent_server: int) -> None:
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{silent_server}/0", socket_timeout_s=0.3, connect_timeout_s=0.3
    )
    started = time.monotonic()
    with pytest.raises(FeatureStoreUnavailable, match="Timeout"):
        store.apply(_one())
    assert 0.25 < time.monotonic() - started < 1.0
    store.close()


def test_per_call_timeout_overrides_the_socket_timeout(silent_server: int) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{silent_server}/0", socket_timeout_s=10.0)
    store._schema_checked = True  # the once-per-store check would use the socket timeout
    store._mode_known = True  # so would the once-per-store INFO cluster
    started = time.monotonic()
    with pytest.raises(FeatureStoreUnavailable):
        store.apply(_one(), timeout_s=0.2)
    assert time.monotonic() - started < 1.0
    store.close()


def test_acl_user_and_password_from_the_url_and_never_in_errors(
    redis_server_factory: Callable[..., Any],
) -> None:
    server = redis_server_factory()
    admin = redis.Redis(port=server.port)
    admin.acl_setuser(
        "scorer", enabled=True, passwords=["+s3cr3t-pw"], keys=["*"], commands=["+@all"]
    )
    admin.acl_setuser("default", enabled=False)
    url = f"redis://scorer:s3cr3t-pw@127.0.0.1:{server.port}/0"
    good = RedisStore.from_url(url)
    assert good.apply(_one()).shape == (1, FeatureConfig().n_features)
    bad = RedisStore.from_url(f"redis://scorer:wrong-pw@127.0.0.1:{server.port}/0")
    with pytest.raises(FeatureStoreUnavailable) as info:
        bad.apply(_one())
    assert "wrong-pw" not in str(info.value)
    assert "scorer:***@" in str(info.value)
    server.stop()
    with pytest.raises(FeatureStoreUnavailable) as info:
        good.apply(_one("z"))
    assert "s3cr3t-pw" not in str(info.value)
    good.close()
    bad.close()


@pytest.mark.reliability
def test_a_lost_reply_is_safe_to_retry(redis_store: RedisStore, raw_redis: redis.Redis) -> None:
    # 4,000 transactions keep the server busy for about 50 ms here (32 calls of 128), so
    # that no reply is in the socket before the client first reads with its 0.1 ms bound
    df = simulate(SimulatorConfig(n_customers=200, n_terminals=400, n_days=30, seed=5)).head(4000)
    batch = TransactionBatch.from_columns(
        df["transaction_id"].tolist(),
        df["customer_id"].tolist(),
        df["terminal_id"].tolist(),
        df["event_time_ms"].to_numpy(),
        df["amount"].to_numpy(),
    )
    redis_store.apply(_one("warm-up", "w"))
    with pytest.raises(FeatureStoreUnavailable, match="Timeout"):
        redis_store.apply(batch, timeout_s=0.0001)
    # the server finished the first call although the client gave up (the calls after it
    # may or may not have run: the connection was dropped)
    deadline = time.monotonic() + 5
    last = CHUNK_SIZE - 1
    key = rows_keys(redis_store.prefix, batch.customer_id, batch.event_time_ms // 1000)[last]
    while not raw_redis.hexists(key, batch.transaction_id[last]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert raw_redis.hexists(key, batch.transaction_id[last])
    retried = redis_store.apply(batch)
    assert np.array_equal(retried, MemoryStore().apply(batch), equal_nan=True)


def test_offsets_are_recorded_with_the_batch_and_never_go_back(redis_store: RedisStore) -> None:
    redis_store.apply(_one("a"), offsets={0: 10, 1: 5})
    assert redis_store.applied_offsets() == {0: 10, 1: 5}
    redis_store.apply(_one("b"), offsets={0: 7, 1: 9, 2: 1})
    assert redis_store.applied_offsets() == {0: 10, 1: 9, 2: 1}
    redis_store.apply(_one("c").take([]), offsets={3: 4}, topic="other")
    assert redis_store.applied_offsets("other") == {3: 4}
    assert redis_store.applied_offsets("never") == {}


def test_history_is_trimmed_and_idle_keys_expire(
    redis_store: RedisStore, raw_redis: redis.Redis
) -> None:
    half_day = DAY_S * 1000 // 2
    for i in range(120):  # 60 days, one transaction every 12 hours
        redis_store.apply(_one(f"tx{i}", "busy", T0 + i * half_day))
    p, ms_last = redis_store.prefix, T0 + 119 * half_day
    # 31 days kept (30-day window + 1 day slack), trimmed in bulk once 16 are out of it;
    # the customer history is a 320-byte header (48, then the maxima area of 272) then 32
    # bytes per transaction
    history = (raw_redis.strlen(f"{p}:{{c:busy}}:h") - 320) // 32
    assert 62 <= history <= 62 + 16
    # equal amounts: each is a maximum that ends the one before, so the area holds one
    # (no spill, -inf), the newest
    area = raw_redis.getrange(f"{p}:{{c:busy}}:h", 48, 48 + 31)
    assert area == struct.pack("<dddd", -np.inf, 1, ms_last // 1000, 100)
    assert not raw_redis.exists(f"{p}:{{c:busy}}:m")
    # rows are kept per week of event time, a week's hash deleted once the history no longer
    # reaches into it: those of the history, and at most a week (14) more
    ms = [T0 + i * half_day for i in range(120)]
    weeks = {k.decode(): raw_redis.hlen(k) for k in raw_redis.scan_iter(match=f"{p}:{{c:busy}}:r*")}
    held = rows_keys(p, ["busy"] * history, np.array(ms[120 - history :]) // 1000)
    assert set(weeks) == set(held)
    assert 62 <= sum(weeks.values()) <= 62 + 16 + 14
    assert not raw_redis.hexists(rows_keys(p, ["busy"], [ms[0] // 1000])[0], "tx0")
    assert raw_redis.hexists(rows_keys(p, ["busy"], [ms[119] // 1000])[0], "tx119")
    # 38 days kept for terminals (a 24-byte header, then 8 bytes per transaction)
    terminal = (raw_redis.strlen(f"{p}:{{t:t}}:w") - 24) // 8
    assert 76 <= terminal <= 76 + 16
    for key in raw_redis.scan_iter(match=f"{p}:*"):
        if key.endswith(b":schema"):
            continue
        ttl_days = raw_redis.pttl(key) / 1000 / DAY_S
        assert 30 < ttl_days <= 55, key


def test_a_prefix_holding_another_definition_is_refused(redis_url: str, store_prefix: str) -> None:
    first = RedisStore.from_url(redis_url, prefix=store_prefix)
    first.apply(_one())
    other = RedisStore.from_url(redis_url, prefix=store_prefix, config=FeatureConfig(delay_days=6))
    with pytest.raises(ConfigError, match="another definition"):
        other.apply(_one("b"))
    first.drop()
    first.close()
    other.close()


def test_a_prefix_in_an_older_key_layout_is_refused(
    redis_url: str, store_prefix: str, raw_redis: redis.Redis
) -> None:
    # layout 1 recorded the bare schema hash; its rows would not be found by this version,
    # so a redelivered transaction would count twice
    raw_redis.set(f"{store_prefix}:schema", FeatureConfig().schema_hash())
    store = RedisStore.from_url(redis_url, prefix=store_prefix)
    with pytest.raises(ConfigError, match="key layout 1 .* writes layout 6"):
        store.apply(_one())
    assert raw_redis.keys(f"{store_prefix}:{{*") == []  # nothing written
    store.close()
    raw_redis.delete(f"{store_prefix}:schema")


def test_a_prefix_in_layout_2_is_refused(
    redis_url: str, store_prefix: str, raw_redis: redis.Redis
) -> None:
    # layout 2 had no identity keys and shorter history headers: read as layout 3 it would
    # mistake records for header fields
    raw_redis.set(f"{store_prefix}:schema", f"{FeatureConfig().schema_hash()} layout 2")
    store = RedisStore.from_url(redis_url, prefix=store_prefix)
    with pytest.raises(ConfigError, match="key layout 2 .* writes layout 6"):
        store.apply(_one())
    store.close()
    raw_redis.delete(f"{store_prefix}:schema")


def test_marks_are_raised_only_once_every_call_of_the_batch_ran(
    redis_store: RedisStore,
) -> None:
    rows = [(f"m{i}", f"c{i}", "t", T0 + i * 1000, 1.0) for i in range(5)]
    batch = TransactionBatch.from_columns(*(list(col) for col in zip(*rows, strict=True)))
    redis_store.apply(_one("warm-up"))  # the store knows it is a single server
    wm = np.full(len(batch), np.nan)
    calls = single_calls(
        redis_store._tx_script,
        redis_store.prefix,
        redis_store._head,
        batch,
        numbers_of(batch, wm),
        fingerprints(batch),
        {0: 5},
        "marks",
        2,
    )
    assert len(calls) == 3
    # the first call is lost: the others run, the last one does not raise the mark
    redis_store._run(calls[1:], None)
    assert redis_store.applied_offsets("marks") == {}
    # the batch again, whole: applied (the rows already there kept), the mark raised
    out = redis_store.apply(batch, offsets={0: 5}, topic="marks")
    assert redis_store.applied_offsets("marks") == {0: 5}
    np.testing.assert_array_equal(out, MemoryStore().apply(batch))
