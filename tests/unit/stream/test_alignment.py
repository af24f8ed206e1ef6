"""Partitions with a backlog taken in timestamp order (``PartitionAligner``): pure logic."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.stream.alignment import PartitionAligner

NOW = 1_000_000
FAR = 10**6
"""A high watermark far past every offset used: the partition has a backlog."""


def _feed(
    aligner: PartitionAligner, records: list[tuple[int, int, int]], fetched: int = NOW
) -> None:
    """records: (partition, offset, timestamp); each item is (name, fetched, start)."""
    items = [(f"p{p}o{o}", fetched, ts) for p, o, ts in records]
    aligner.add(
        items, [p for p, _, _ in records], [o for _, o, _ in records], [r[2] for r in records]
    )


def _names(items: list[tuple[object, int, int]]) -> list[object]:
    return [item[0] for item in items]


def test_a_backlog_leaves_in_timestamp_order_never_past_a_partition_behind() -> None:
    aligner = PartitionAligner()
    aligner.assign([0, 1], NOW)
    # the consumer hands over partition 0's fetch first: days ahead of partition 1's
    _feed(aligner, [(0, 0, 10), (0, 1, 20), (0, 2, 30), (0, 3, 40)])
    assert aligner.release({0: FAR, 1: FAR}, NOW) == []  # partition 1 has brought nothing
    _feed(aligner, [(1, 0, 15), (1, 1, 25)])
    out = aligner.release({0: FAR, 1: FAR}, NOW)
    # partition 1 may still bring anything from 25 on: 30 and 40 wait for it
    assert _names(out) == ["p0o0", "p1o0", "p0o1", "p1o1"]
    assert aligner.held == 2
    _feed(aligner, [(1, 2, 35), (1, 3, 50)])
    assert _names(aligner.release({0: FAR, 1: FAR}, NOW)) == ["p0o2", "p1o2", "p0o3"]
    assert aligner.held == 1


def test_a_caught_up_partition_holds_nothing_back() -> None:
    aligner = PartitionAligner(min_lag=256)
    aligner.assign([0, 1], NOW)
    _feed(aligner, [(1, 0, 5)])
    _feed(aligner, [(0, 0, 10), (0, 1, 20)])
    # partition 1 is at its end (offset 1 of 1): what it brings next is newer
    out = aligner.release({0: FAR, 1: 1}, NOW)
    assert _names(out) == ["p1o0", "p0o0", "p0o1"]
    # a few records waiting (a fetch in flight, transaction markers) are not a backlog
    _feed(aligner, [(0, 2, 30)])
    assert _names(aligner.release({0: FAR, 1: 1 + 255}, NOW)) == ["p0o2"]
    # a backlog is
    _feed(aligner, [(0, 3, 40)])
    assert aligner.release({0: FAR, 1: 1 + 256}, NOW) == []


def test_with_no_partition_behind_everything_leaves_at_once() -> None:
    aligner = PartitionAligner()
    aligner.assign([0], NOW)
    _feed(aligner, [(0, 0, 30), (0, 1, 10)])  # one partition keeps its offset order
    assert _names(aligner.release({0: FAR}, NOW)) == ["p0o0", "p0o1"]
    assert aligner.held == 0
    assert aligner.idle


def test_a_partition_that_brings_nothing_stops_holding_back_after_the_idle_time() -> None:
    aligner = PartitionAligner(max_idle_ms=250)
    aligner.assign([0, 1], NOW)
    _feed(aligner, [(0, 0, 10)])
    assert aligner.release({0: FAR, 1: FAR}, NOW + 100) == []
    # while the consumer still had records queued, partition 1's may be behind them
    assert aligner.release({0: FAR, 1: FAR}, NOW + 400, drained=False) == []
    assert aligner.release({0: FAR, 1: FAR}, NOW + 600) == []
    assert _names(aligner.release({0: FAR, 1: FAR}, NOW + 651)) == ["p0o0"]
    # given up: more from partition 0 goes at once, even while the consumer is busy
    _feed(aligner, [(0, 1, 20)])
    assert _names(aligner.release({0: FAR, 1: FAR}, NOW + 700, drained=False)) == ["p0o1"]
    # until partition 1 brings a record: it holds back again
    _feed(aligner, [(1, 0, 30)])
    _feed(aligner, [(0, 2, 40)])
    assert _names(aligner.release({0: FAR, 1: FAR}, NOW + 701)) == ["p1o0"]


def test_a_partition_staging_too_much_is_paused_and_resumed_at_half() -> None:
    aligner = PartitionAligner(cap=4)
    aligner.assign([0, 1], NOW)
    _feed(aligner, [(0, o, 10 * o) for o in range(4)])
    assert aligner.flow() == ([0], [])
    assert aligner.paused == frozenset({0})
    assert not aligner.idle
    _feed(aligner, [(1, 0, 15)])
    assert _names(aligner.release({0: FAR, 1: FAR}, NOW)) == ["p0o0", "p0o1", "p1o0"]
    assert aligner.flow() == ([], [0])  # two left of four
    assert aligner.paused == frozenset()


def test_a_revoked_partition_drops_its_records_and_holds_nothing_back() -> None:
    aligner = PartitionAligner()
    aligner.assign([0, 1], NOW)
    _feed(aligner, [(0, 0, 10), (1, 0, 20), (1, 1, 30)])
    assert (aligner.staged(0), aligner.staged(1)) == (1, 2)
    aligner.revoke([1])
    assert aligner.held == 1
    assert aligner.staged(1) == 0
    assert _names(aligner.release({0: FAR}, NOW)) == ["p0o0"]


def test_a_rewind_drops_what_was_staged_and_resumes_the_paused() -> None:
    aligner = PartitionAligner(cap=2)
    aligner.assign([0, 1], NOW)
    _feed(aligner, [(0, 0, 10), (0, 1, 20)])
    assert aligner.flow() == ([0], [])
    aligner.reset(NOW + 5)
    assert aligner.held == 0
    assert aligner.flow() == ([], [0])
    # both start over: nothing has come from either since
    _feed(aligner, [(0, 0, 10)])
    assert aligner.release({0: FAR, 1: FAR}, NOW + 6) == []


def test_a_new_partition_holds_back_until_its_start_shows_it_caught_up() -> None:
    aligner = PartitionAligner()
    aligner.assign([0, 1, 2], NOW)
    _feed(aligner, [(0, 0, 10)])
    # partitions 1 and 2: where their consumption starts is not known yet
    assert aligner.release({0: FAR, 1: 40, 2: 0}, NOW) == []
    aligner.start(1, 40)  # committed at its end: caught up
    assert aligner.release({0: FAR, 1: 40, 2: 0}, NOW) == []
    aligner.start(2, 0)  # empty
    assert _names(aligner.release({0: FAR, 1: 40, 2: 0}, NOW)) == ["p0o0"]
    # a start far behind its end is a backlog: it holds back until it brings records
    aligner.assign([3], NOW)
    aligner.start(3, 0)
    _feed(aligner, [(0, 1, 20)])
    assert aligner.release({0: FAR, 1: 40, 2: 0, 3: 1000}, NOW) == []
    aligner.start(3, 500)  # a second start changes nothing...
    _feed(aligner, [(3, 0, 15)])
    aligner.start(3, 999)  # ...nor one after records came
    assert _names(aligner.release({0: FAR, 1: 40, 2: 0, 3: 1000}, NOW)) == ["p3o0"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=30), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_any_interleaving_of_chunks_leaves_merged_in_each_partitions_order(
    steps: list[list[int]], rnd: random.Random
) -> None:
    """Each partition's records (timestamps rising by the steps drawn), handed over in
    chunks in any order, leave in timestamp order overall and in offset order within each
    partition, every record exactly once."""
    parts = list(range(len(steps)))
    records: dict[int, list[tuple[int, int, int]]] = {p: [] for p in parts}
    for p, gaps in enumerate(steps):
        ts = 0
        for offset, gap in enumerate(gaps):
            ts += gap
            records[p].append((p, offset, ts))
    ends = {p: len(records[p]) for p in parts}
    aligner = PartitionAligner(min_lag=1)
    aligner.assign(parts, NOW)
    for p in parts:
        aligner.start(p, 0)
    cursor = dict.fromkeys(parts, 0)
    out: list[tuple[object, int, int]] = []
    while any(cursor[p] < ends[p] for p in parts):
        p = rnd.choice([q for q in parts if cursor[q] < ends[q]])
        k = rnd.randint(1, ends[p] - cursor[p])
        _feed(aligner, records[p][cursor[p] : cursor[p] + k])
        cursor[p] += k
        out += aligner.release(ends, NOW)
    out += aligner.release(ends, NOW)
    assert aligner.held == 0
    stamps = [start for _, _, start in out]
    assert stamps == sorted(stamps)
    for p in parts:
        mine = [name for name, _, _ in out if str(name).startswith(f"p{p}o")]
        assert mine == [f"p{p}o{o}" for o in range(ends[p])]


def test_caught_up_names_the_partitions_with_nothing_staged_and_no_backlog() -> None:
    aligner = PartitionAligner(min_lag=256)
    aligner.assign([0, 1, 2, 3], NOW)
    aligner.start(2, 0)
    _feed(aligner, [(0, 0, 10), (1, 0, 15)])
    # 0: a backlog; 1: at its end but its record staged; 2: nothing brought, its end 0;
    # 3: where it starts unknown
    assert aligner.caught_up({0: FAR, 1: 1, 2: 0, 3: 0}) == {2: 0}
    assert _names(aligner.release({0: 1, 1: 1, 2: 0, 3: 0}, NOW + 10_000)) == ["p0o0", "p1o0"]
    assert aligner.caught_up({0: 1, 1: 1, 2: 0}) == {0: 0, 1: 0, 2: 0}
    assert aligner.caught_up({0: 256, 1: 1 + 256}) == {0: 255}
    assert aligner.caught_up({0: 3, 1: 2}) == {0: 2, 1: 1}  # 1: a transaction marker left


def test_a_further_bound_stops_each_partition_at_its_first_record_refused() -> None:
    aligner = PartitionAligner()
    aligner.assign([0, 1], NOW)
    _feed(aligner, [(0, 0, 10), (0, 1, 20), (0, 2, 30), (1, 0, 12), (1, 1, 14)])
    # the group allows only some names (say, records dated up to its ceiling)
    allowed = {"p0o0", "p0o1", "p1o0", "p1o1"}

    def allow(item: tuple[object, int, int]) -> bool:
        return item[0] in allowed

    out = aligner.release({0: 3, 1: 2}, NOW, allow=allow)
    # partition 1 is not held back by partition 0's refused record: no head-of-line wait
    assert _names(out) == ["p0o0", "p1o0", "p1o1", "p0o1"]
    assert aligner.held == 1
    assert aligner.release({0: 3, 1: 2}, NOW, allow=allow) == []
    allowed.add("p0o2")
    assert _names(aligner.release({0: 3, 1: 2}, NOW, allow=allow)) == ["p0o2"]
    assert aligner.held == 0


def test_a_partition_the_bound_waits_for_takes_its_next_record_past_it() -> None:
    aligner = PartitionAligner()
    aligner.assign([0, 1], NOW)
    _feed(aligner, [(0, 0, 10), (0, 1, 20), (1, 0, 12)])

    def refuse(_item: tuple[object, int, int]) -> bool:
        return False

    out = aligner.release({0: 2, 1: 1}, NOW, allow=refuse, leading=frozenset({0}))
    assert _names(out) == ["p0o0"]  # one at a time, and only the leading partition's
    assert _names(aligner.release({0: 2, 1: 1}, NOW, allow=refuse, leading=frozenset({0}))) == [
        "p0o1"
    ]
    assert aligner.held == 1
