"""The group's floor from the processes' marks (``fraudstream.stream.group_order``): pure
logic; the script itself runs on a real Redis in tests/integration/stream."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fraudstream.stream.group_order import (
    BACKLOG,
    CAUGHT_UP,
    CERTIFY_MARGIN_MS,
    DRAINED,
    KEY_TTL_MS,
    LIVE_FRESH_MS,
    LIVE_WINDOW_MS,
    REPORT_FRESH_S,
    STALE_MS,
    UNBOUNDED,
    Bound,
    GroupOrder,
    Limits,
    allowed,
    encode,
    event_time_of,
    floor_of,
    state_of,
)

NOW = 1_800_000_000_000


def test_a_partition_with_a_backlog_bounds_the_group() -> None:
    fields = {b"0": f"500:0:{NOW}".encode(), b"1": f"700:0:{NOW - 10}".encode()}
    assert floor_of(fields, NOW)[0] == 500


def test_a_caught_up_partition_bounds_nothing_while_its_owner_answers() -> None:
    fields = {"0": f"500:2:{NOW - LIVE_FRESH_MS}", "1": f"900:0:{NOW}"}
    # drained: it vouches for every record written half a second before its mark
    assert floor_of(fields, NOW) == Bound(
        900, frozenset({1}), live_floor=500, certified_ms=NOW - LIVE_FRESH_MS - CERTIFY_MARGIN_MS
    )
    # caught up with a few records left in the broker: for none
    fields["0"] = f"500:1:{NOW - LIVE_FRESH_MS}"
    assert floor_of(fields, NOW) == Bound(900, frozenset({1}), 500, -math.inf)
    # its owner silent (stopped, stalled): the group waits once it is the slack behind
    fields["0"] = f"500:1:{NOW - LIVE_FRESH_MS - 1}"
    assert floor_of(fields, NOW)[0] == 500


def test_a_mark_past_the_session_timeout_many_times_over_bounds_nothing() -> None:
    fields = {"0": f"500:0:{NOW - STALE_MS - 1}", "1": f"900:0:{NOW - STALE_MS}"}
    assert floor_of(fields, NOW)[0] == 900
    assert floor_of({}, NOW) == UNBOUNDED


def test_an_unreadable_mark_is_ignored() -> None:
    fields = {"0": "garbage", "1": "1:0", "x": f"1:0:{NOW}", "2": f"42:0:{NOW}"}
    assert floor_of(fields, NOW)[:2] == (42, frozenset({2}))


def test_the_partitions_at_the_floor_are_named() -> None:
    fields = {b"0": f"500:0:{NOW}".encode(), b"1": f"500:1:{NOW - 5_000}".encode(), b"2": b"9"}
    assert floor_of(fields, NOW)[:2] == (500, frozenset({0, 1}))


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
    order.report({1: (300, BACKLOG)})
    order.sync()
    assert calls == [[str(KEY_TTL_MS), "1", "300:0"]]
    assert order.floor == 100  # partition 0's, another process's
    assert order.limits() == Limits(150, frozenset({0}), math.inf, math.inf)

    def fail(_script: str, _key: str, _args: Sequence[str]) -> Any:
        raise ConnectionError("refused")

    order._run = fail  # noqa: SLF001 - the store gone
    order.sync()
    assert order.floor == math.inf
    assert order.errors == 1


def test_marks_the_loop_has_not_renewed_claim_no_partition_drained() -> None:
    """A stalled loop's view of its partitions' ends is as old as its last report: the
    publisher, on its own thread, stops vouching for the records written since."""
    sent: list[Sequence[str]] = []
    order = GroupOrder(lambda _s, _k, args: sent.append(args) or [NOW, []], "k", slack_ms=50)
    order.report({1: (300, DRAINED), 2: (200, CAUGHT_UP), 3: (100, BACKLOG)})
    order.sync()
    order._reported_at -= REPORT_FRESH_S + 0.01  # noqa: SLF001 - the loop stalled that long
    order.sync()
    assert sent == [
        [str(KEY_TTL_MS), "1", "300:2", "2", "200:1", "3", "100:0"],
        [str(KEY_TTL_MS), "1", "300:1", "2", "200:1", "3", "100:0"],
    ]


def test_past_a_caught_up_mark_only_what_its_owner_has_applied_goes() -> None:
    """Partition 0 bounds at 100, 1 is caught up at 300 (its owner found nothing to apply
    when it wrote its mark at NOW): past 1's ceiling only records written before that may
    go (a history written at full speed into caught-up processes, which 1's owner has not
    fetched yet), and never past 0's."""
    fetched = 10 * LIVE_WINDOW_MS  # a history: its records are dated long before
    limits = Limits(100 + 50, frozenset({0}), 300 + 50, NOW)
    assert allowed(150, NOW + 10**9, fetched, limits)  # within both: whenever written
    assert allowed(140, None, None, limits)
    assert not allowed(151, NOW, fetched, limits)  # 0 bounds everything
    past = Limits(math.inf, frozenset(), 350, NOW)
    assert allowed(351, NOW, fetched, past)
    assert not allowed(351, NOW + 1, fetched, past)  # written after the mark: the next one
    assert allowed(351, None, fetched, past)  # no Kafka timestamp: nothing to wait for
    assert allowed(None, NOW + 1, fetched, past)  # no event time: decoding dead-letters it


def test_a_live_record_never_waits_for_a_quiet_partitions_owner() -> None:
    now = NOW
    quiet = Limits(math.inf, frozenset(), now - 7 * LIVE_WINDOW_MS, now - 600)
    assert allowed(now - 100, now - 50, now, quiet)
    assert allowed(now - LIVE_WINDOW_MS, now, now, quiet)
    assert not allowed(now - LIVE_WINDOW_MS - 1, now, now, quiet)  # a day late: a history


def test_event_time_of_reads_epoch_ms_and_rfc_3339_and_nothing_else() -> None:
    assert event_time_of(b'{"event_time": 1522540800000}') == 1_522_540_800_000
    assert event_time_of(b'{"event_time": "2018-04-01T00:00:00Z"}') == 1_522_540_800_000
    # as decoding reads it: a whole float is a time too
    assert event_time_of(b'{"event_time": 1522540800000.0}') == 1_522_540_800_000
    for bad in (b'{"event_time": true}', b'{"event_time": "soon"}', b"[1]", b"{", b"", None):
        assert event_time_of(bad) is None


def test_a_caught_up_partition_with_at_most_a_transaction_marker_left_is_drained() -> None:
    assert state_of(None) == BACKLOG  # records staged, buffered, or a backlog in the broker
    assert state_of(0) == state_of(1) == DRAINED
    assert state_of(2) == state_of(255) == CAUGHT_UP
