"""The group's processes kept within a bound of event time of one another
(``fraudstream.stream.group_order``), on a real Redis and with real serve processes: the
marks' script, and a process that stops while the group drains a backlog."""

from __future__ import annotations

import math
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import numpy as np
import orjson
import pandas as pd
import pytest

from fraudstream.features.redis_store import RedisStore
from fraudstream.models.registry import Registry
from fraudstream.stream.group_order import BACKLOG, CAUGHT_UP, KEY_TTL_MS, GroupOrder, key_of
from tests.infra import reader
from tests.integration.stream.test_serve import _items, expected_scores
from tests.serving import ServeFactory, produce

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore.from_url(redis_url, prefix=f"t{uuid.uuid4().hex[:12]}")
    yield s
    s.drop()


def test_the_group_is_bounded_by_its_slowest_partition(store: RedisStore) -> None:
    key = key_of(store.prefix, "g", "tx")
    a = GroupOrder(store.eval_on_key, key, slack_ms=DAY_MS)
    b = GroupOrder(store.eval_on_key, key, slack_ms=DAY_MS)
    a.report({0: (10 * DAY_MS, BACKLOG), 1: (12 * DAY_MS, BACKLOG)})
    b.report({2: (3 * DAY_MS, BACKLOG), 3: (50 * DAY_MS, CAUGHT_UP)})
    a.sync()
    b.sync()
    a.sync()
    # partition 2 (b's) bounds both; 3 is caught up and its owner answers
    assert a.floor == b.floor == 3 * DAY_MS
    assert a.limits()[:2] == (4 * DAY_MS, frozenset({2}))
    ttl = store.client.pttl(key)
    assert 0 < ttl <= KEY_TTL_MS
    # partition 2 moves to a, which has not applied any of it yet: its last mark stays
    b.report({3: (50 * DAY_MS, CAUGHT_UP)})
    b.sync()
    a.sync()
    assert a.floor == 3 * DAY_MS
    a.report({0: (10 * DAY_MS, BACKLOG), 1: (12 * DAY_MS, BACKLOG), 2: (5 * DAY_MS, BACKLOG)})
    a.sync()
    assert a.floor == 5 * DAY_MS
    # b's caught-up partition bounds the group once b goes silent
    a.report(
        {0: (60 * DAY_MS, CAUGHT_UP), 1: (60 * DAY_MS, CAUGHT_UP), 2: (60 * DAY_MS, CAUGHT_UP)}
    )
    a.sync()
    assert a.floor == math.inf
    time.sleep(1.2)
    a.sync()
    assert a.floor == 50 * DAY_MS


def test_a_store_that_does_not_answer_lifts_the_bound() -> None:
    dead = RedisStore.from_url("redis://127.0.0.1:1/0", prefix="gone")
    order = GroupOrder(dead.eval_on_key, key_of("gone", "g", "tx"), slack_ms=DAY_MS)
    order.bound = (0.0, frozenset())
    order.sync()
    assert order.floor == math.inf
    assert order.errors == 1


def _read_until(bootstrap: str, topic: str, ids: set[str], timeout_s: float) -> list[dict]:  # type: ignore[type-arg]
    """Every decision on ``topic`` (duplicates of a redelivery included) once each of
    ``ids`` has one, or at the timeout."""
    consumer = reader(bootstrap, topic)
    out: list[dict] = []  # type: ignore[type-arg]
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not ids <= seen and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    out.append(orjson.loads(msg.value()))
                    seen.add(out[-1]["transaction_id"])
    finally:
        consumer.close()
    return out


def _assert_offline(out: list[dict], want: dict[str, float]) -> None:  # type: ignore[type-arg]
    """Every decision's score equals the offline one; a failure names the rungs and
    event days of those that differ (a degraded rung is a stalled store, not an order).
    A score that is not a number differs too."""
    bad = [d for d in out if not abs(d["score"] - want[d["transaction_id"]]) < 1e-6]
    rungs = Counter(str(d.get("degraded")) for d in bad)
    days = Counter(d["event_time"] // DAY_MS for d in bad)
    assert not bad, f"{len(bad)} decisions differ from offline; rungs {rungs}, days {days}"


def test_a_process_stopped_mid_backlog_holds_the_group_back_until_it_leaves(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
) -> None:
    """Two processes share six partitions; the first two days are decided, then one
    process stops (SIGSTOP: no heartbeat, no marks) and the remaining 18 days arrive. The
    other must not run more than the slack (6 days, within the 7-day label delay) past the
    stopped one's partitions: it waits until the group gives it those partitions (after
    the 6 s session timeout) and then takes them in order. Every decision equals the
    offline score; with ``--no-group-order`` the running process decides its own
    customers' later days with terminal windows that miss the stopped one's records."""
    flags = ["--max-batch", "256", "--budget-ms", "60000"]
    first = serve_factory(registry.root, partitions=6, extra=flags)
    second = serve_factory(registry.root, partitions=6, extra=flags)  # ready: it owns some
    items = _items(history)
    times = history["event_time_ms"].to_numpy()
    early = int(np.searchsorted(times, times.min() + 2 * DAY_MS))
    ids = history["transaction_id"].astype(str).tolist()
    produce(kafka_bootstrap, first.input, items[:early])
    assert set(ids[:early]) <= {
        d["transaction_id"]
        for d in _read_until(kafka_bootstrap, first.decisions, set(ids[:early]), 60)
    }
    time.sleep(1.0)  # both have published their marks since their last batch
    os.kill(second.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)  # its marks are no longer fresh: they bound the group
        produce(kafka_bootstrap, first.input, items[early:])
        out = _read_until(kafka_bootstrap, first.decisions, set(ids), 120)
    finally:
        os.kill(second.proc.pid, signal.SIGKILL)
    assert {d["transaction_id"] for d in out} == set(ids)
    _assert_offline(out, expected_scores(history, registry))
    metrics = first.metrics()
    assert re.search(r"^fraudstream_group_order_overruns_total 0\.0$", metrics, re.M)
    assert re.search(r"^fraudstream_group_order_sync_errors 0\.0$", metrics, re.M)


def test_a_backlog_written_at_once_into_caught_up_processes_is_decided_as_offline(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
) -> None:
    """Two caught-up processes share six partitions; the remaining 18 days arrive at once
    (a replay written at full speed). No process may run a label delay ahead of the other
    in event time while their partitions still count as caught up."""
    flags = ["--max-batch", "256", "--budget-ms", "60000"]
    first = serve_factory(registry.root, partitions=6, extra=flags)
    second = serve_factory(registry.root, partitions=6, extra=flags)
    items = _items(history)
    times = history["event_time_ms"].to_numpy()
    early = int(np.searchsorted(times, times.min() + 2 * DAY_MS))
    ids = history["transaction_id"].astype(str).tolist()
    produce(kafka_bootstrap, first.input, items[:early])
    _read_until(kafka_bootstrap, first.decisions, set(ids[:early]), 60)
    time.sleep(1.0)  # both caught up, their marks fresh
    produce(kafka_bootstrap, first.input, items[early:])
    out = _read_until(kafka_bootstrap, first.decisions, set(ids), 120)
    second.proc.kill()
    assert {d["transaction_id"] for d in out} == set(ids)
    _assert_offline(out, expected_scores(history, registry))
