"""The group's floor from the processes' marks (``fraudstream.stream.group_order``): pure
logic; the script itself runs on a real Redis in tests/integration/stream."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fraudstream.stream.group_order import (
    KEY_TTL_MS,
    LIVE_FRESH_MS,
    STALE_MS,
    GroupOrder,
    encode,
    event_time_of,
    floor_of,
)

NOW = 1_800_000_000_000


def test_a_partition_with_a_backlog_bounds_the_group() -> None:
    fields = {b"0": f"500:0:{NOW}".encode(), b"1": f"700:0:{NOW - 10}".encode()}
    assert floor_of(fields, NOW)[0] == 500


def test_a_caught_up_partition_bounds_nothing_while_its_owner_answers() -> None:
    fields = {"0": f"500:1:{NOW - LIVE_FRESH_MS}", "1": f"900:0:{NOW}"}
    assert floor_of(fields, NOW)[0] == 900
    # its owner silent (stopped, stalled): the group waits once it is the slack behind
    fields["0"] = f"500:1:{NOW - LIVE_FRESH_MS - 1}"
    assert floor_of(fields, NOW)[0] == 500


def test_a_mark_past_the_session_timeout_many_times_over_bounds_nothing() -> None:
    fields = {"0": f"500:0:{NOW - STALE_MS - 1}", "1": f"900:0:{NOW - STALE_MS}"}
    assert floor_of(fields, NOW)[0] == 900
    assert floor_of({}, NOW) == (math.inf, frozenset())


def test_an_unreadable_mark_is_ignored() -> None:
    fields = {"0": "garbage", "1": "1:0", "x": f"1:0:{NOW}", "2": f"42:0:{NOW}"}
    assert floor_of(fields, NOW) == (42, frozenset({2}))


def test_the_partitions_at_the_floor_are_named() -> None:
    fields = {b"0": f"500:0:{NOW}".encode(), b"1": f"500:1:{NOW - 5_000}".encode(), b"2": b"9"}
    assert floor_of(fields, NOW) == (500, frozenset({0, 1}))


def test_encode_lists_each_partition_with_its_mark() -> None:
    ttl = str(KEY_TTL_MS)
    assert encode({3: (30, True), 1: (10, False)}) == [ttl, "1", "10:0", "3", "30:1"]
    assert encode({}) == [ttl]


def test_sync_publishes_the_marks_and_a_failure_lifts_the_bound() -> None:
    calls: list[Sequence[str]] = []
    reply: list[Any] = [NOW, [b"0", f"100:0:{NOW}".encode()]]

    def run(_script: str, key: str, args: Sequence[str]) -> Any:
        assert key == "k"
        calls.append(args)
        return reply

    order = GroupOrder(run, "k", slack_ms=50)
    order.report({1: (300, False)})
    order.sync()
    assert calls == [[str(KEY_TTL_MS), "1", "300:0"]]
    assert order.floor == 100  # partition 0's, another process's
    assert order.limits() == (150, frozenset({0}))

    def fail(_script: str, _key: str, _args: Sequence[str]) -> Any:
        raise ConnectionError("refused")

    order._run = fail  # noqa: SLF001 - the store gone
    order.sync()
    assert order.floor == math.inf
    assert order.errors == 1


def test_event_time_of_reads_epoch_ms_and_rfc_3339_and_nothing_else() -> None:
    assert event_time_of(b'{"event_time": 1522540800000}') == 1_522_540_800_000
    assert event_time_of(b'{"event_time": "2018-04-01T00:00:00Z"}') == 1_522_540_800_000
    # as decoding reads it: a whole float is a time too
    assert event_time_of(b'{"event_time": 1522540800000.0}') == 1_522_540_800_000
    for bad in (b'{"event_time": true}', b'{"event_time": "soon"}', b"[1]", b"{", b"", None):
        assert event_time_of(bad) is None
