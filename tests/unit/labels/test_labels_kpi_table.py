"""The KPI table over a dict standing in for faust's table: hour windows by event time,
crash repair between the two writes, event-time expiry, the states rebuilt after a restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features.labels.join import DECIDED, FRAUDS, MARK, merge
from fraudstream.features.labels.kpi_table import EventHourWindow, KpiTable
from fraudstream.features.labels.records import JoinRecord

T = 1_522_540_800_000  # 2018-04-01T00:00Z
DAY_MS = 86_400_000


class FakeTable(dict[Any, Any]):
    """What KpiTable uses of a faust table; can fail the n-th write like a killed process."""

    def __init__(self) -> None:
        super().__init__()
        self.window = EventHourWindow()
        self.writes: list[Any] = []
        self.fail_at: int | None = None

    def __setitem__(self, key: Any, value: Any) -> None:
        if self.fail_at is not None and len(self.writes) == self.fail_at:
            self.fail_at = None
            raise KeyboardInterrupt("killed")
        self.writes.append(key)
        super().__setitem__(key, value)


class FakeWindowed:
    def __init__(self, table: FakeTable) -> None:
        self.table = table


class Kpis(KpiTable):
    """One record per message, as a convenience."""

    def one(self, partition: int, offset: int, record: JoinRecord) -> bool:
        return self.process(partition, offset, [record]) == 1


def _kpis(table: FakeTable, retention_days: float = 14) -> Kpis:
    return Kpis(FakeWindowed(table), retention_days * 86_400)


def test_records_land_in_the_hour_of_their_event_time() -> None:
    table = FakeTable()
    kpis = _kpis(table)
    kpis.one(0, 0, JoinRecord("a", T + 10, decision=2, amount=5.0))
    kpis.one(0, 1, JoinRecord("b", T + 3_600_000, decision=0, amount=1.0))
    kpis.one(1, 0, JoinRecord("c", T + 20, decision=2, amount=2.0))
    kpis.one(0, 2, JoinRecord("a", T + 10, is_fraud=1))
    h0, h1 = kpis.hours()
    assert h0.start_s == T // 1000 and h1.start_s == T // 1000 + 3600
    assert h0.decisions(2) == 2 and h0.frauds(2) == 1 and h0.caught_amount == 5.0
    assert h1.decisions(0) == 1
    assert [h.start_s for h in kpis.hours(last=1)] == [h1.start_s]


def test_stats_are_written_before_the_transaction_state() -> None:
    table = FakeTable()
    _kpis(table).one(3, 9, JoinRecord("a", T, decision=1, amount=1.0))
    assert [k[0] for k in table.writes] == ["p:3", "b:3:9"]


def test_killed_between_the_two_writes_the_replay_counts_once() -> None:
    table = FakeTable()
    table.fail_at = 1  # the stats write lands, the transaction state does not
    record = JoinRecord("a", T, decision=1, amount=1.0)
    with pytest.raises(KeyboardInterrupt):
        _kpis(table).one(0, 5, record)
    restarted = _kpis(table)
    asyncio.run(restarted.reindex())
    assert len(restarted.hours()) == 1
    restarted.one(0, 5, record)  # redelivered: the commit never happened
    restarted.one(0, 6, record)  # and a duplicate from the upstream forwarder
    (hour,) = restarted.hours()
    assert hour.decisions(1) == 1
    stats = table[("p:0", table.window.current(T / 1000))]
    assert stats[MARK] == 5 and stats[DECIDED + 1] == 1
    assert table[("b:0:5", table.window.current(T / 1000))] == {"a": [1, 1.0, -1]}


def test_label_joins_a_decision_of_the_same_hour_only() -> None:
    table = FakeTable()
    kpis = _kpis(table)
    kpis.one(0, 0, JoinRecord("a", T, decision=2, amount=4.0))
    kpis.one(0, 1, JoinRecord("a", T, is_fraud=1))
    kpis.one(0, 2, JoinRecord("a", T, is_fraud=1))
    (hour,) = kpis.hours()
    assert hour.frauds(2) == 1 and hour.confirmed_frauds == 1
    assert table[("p:0", table.window.current(T / 1000))][FRAUDS + 2] == 1


def test_windows_expire_by_event_time_per_partition() -> None:
    table = FakeTable()
    kpis = _kpis(table, retention_days=2)
    kpis.one(0, 0, JoinRecord("old", T, decision=0, amount=1.0))
    kpis.one(1, 0, JoinRecord("other", T, decision=0, amount=1.0))
    kpis.one(0, 1, JoinRecord("new", T + 3 * DAY_MS, decision=0, amount=1.0))
    keys = {k[0] for k in table}
    assert keys == {"p:0", "b:0:1", "p:1", "b:1:0"}
    assert not kpis.one(0, 2, JoinRecord("late", T, is_fraud=1))
    assert not kpis.one(1, 1, JoinRecord("future", int(time.time() * 1000) + 2 * DAY_MS, 0, 1.0))
    assert kpis.ignored == 2
    assert {k[0] for k in table} == keys


def test_event_hour_window() -> None:
    window = EventHourWindow()
    assert window.current(7199.9) == (3600.0, 7199.9) == window.earliest(3600.0)
    assert window.ranges(-1.0) == [(-3600.0, -0.1)]
    assert window.delta(7200.0, 3600) == (3600.0, 7199.9)
    assert window.expires is None and not window.stale(0.0, 1e12)


def test_one_message_writes_each_hour_once_then_the_states() -> None:
    table = FakeTable()
    kpis = _kpis(table)
    batch = [
        JoinRecord("a", T, decision=2, amount=1.0),
        JoinRecord("b", T + 5, decision=1, amount=2.0),
        JoinRecord("a", T, is_fraud=1),
        JoinRecord("a", T, is_fraud=0),
        JoinRecord("c", T + 3_600_000, decision=0, amount=3.0),
    ]
    assert kpis.process(0, 11, batch) == 5
    assert [k[0] for k in table.writes] == ["p:0", "p:0", "b:0:11", "b:0:11"]
    assert table[("b:0:11", table.window.current(T / 1000))] == {
        "a": [2, 1.0, 1],
        "b": [1, 2.0, -1],
    }
    assert table[("b:0:11", table.window.current(T / 1000 + 3600))] == {"c": [0, 3.0, -1]}
    h0, h1 = kpis.hours()
    assert (h0.decisions(2), h0.decisions(1), h0.frauds(2), h0.caught_amount) == (1, 1, 1, 1.0)
    assert h1.decisions(0) == 1


def test_killed_within_a_message_the_replay_counts_once() -> None:
    table = FakeTable()
    table.fail_at = 2  # both hours' statistics land, no transaction state does
    batch = [
        JoinRecord("a", T, decision=2, amount=1.0),
        JoinRecord("c", T + 3_600_000, decision=0, amount=3.0),
        JoinRecord("a", T, is_fraud=1),
    ]
    with pytest.raises(KeyboardInterrupt):
        _kpis(table).process(0, 4, batch)
    restarted = _kpis(table)
    asyncio.run(restarted.reindex())
    restarted.process(0, 4, batch)
    h0, h1 = restarted.hours()
    assert (h0.decisions(2), h0.frauds(2), h1.decisions(0)) == (1, 1, 1)
    assert table[("b:0:4", table.window.current(T / 1000))] == {"a": [2, 1.0, 1]}


def test_a_restarted_worker_joins_labels_to_decisions_it_read_before() -> None:
    table = FakeTable()
    _kpis(table).process(0, 0, [JoinRecord("a", T, decision=2, amount=7.0)])
    restarted = _kpis(table)
    asyncio.run(restarted.reindex())
    restarted.process(0, 1, [JoinRecord("a", T, is_fraud=1), JoinRecord("a", T, decision=0)])
    (hour,) = restarted.hours()
    assert (hour.decisions(2), hour.decisions(0), hour.frauds(2)) == (1, 0, 1)
    assert hour.caught_amount == 7.0 and hour.confirmed_frauds == 1
    # only the changed transaction is written, in the message's own record
    assert table[("b:0:1", table.window.current(T / 1000))] == {"a": [2, 7.0, 1]}


def test_states_from_workers_that_wrote_one_key_per_transaction_are_read() -> None:
    table = FakeTable()
    window = table.window.current(T / 1000)
    table[("t:2:old", window)] = [1, 3.0, -1]
    kpis = _kpis(table)
    asyncio.run(kpis.reindex())
    kpis.process(2, 0, [JoinRecord("old", T, is_fraud=1)])
    (hour,) = kpis.hours()
    assert hour.frauds(1) == 1 and hour.decisions(1) == 0  # the decision was counted before


def test_merge_keeps_the_first_known_side_whatever_the_order() -> None:
    decided, labelled = [2, 5.0, -1], [-1, 0.0, 1]
    assert merge(decided, labelled) == merge(labelled, decided) == [2, 5.0, 1]
    assert merge(None, labelled) == labelled
    assert merge([0, 1.0, 0], [2, 9.0, 1]) == [0, 1.0, 0]


_records = st.lists(
    st.tuples(
        st.integers(0, 1),  # partition
        st.sampled_from("abcdef"),  # transaction
        st.integers(0, 2),  # hour
        st.integers(-1, 2),  # -1: a label, else a decision code
        st.integers(0, 1),  # fraud
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_records, st.integers(0, 40))
def test_a_restart_anywhere_gives_the_same_kpis(raw: list[Any], cut: int) -> None:
    """Reindexed from the table at any message boundary, a worker ends where one that never
    stopped does."""

    def message(i: int) -> tuple[int, int, list[JoinRecord]]:
        partition, tx, hour, side, fraud = raw[i]
        t = T + hour * 3_600_000
        record = (
            JoinRecord(tx, t, is_fraud=fraud)
            if side < 0
            else JoinRecord(tx, t, decision=side, amount=float(i))
        )
        return partition, i, [record]

    table = FakeTable()
    kpis = _kpis(table)
    restarted_table = FakeTable()
    restarted = _kpis(restarted_table)
    for i in range(len(raw)):
        if i == min(cut, len(raw)):
            restarted_table.update(table)
            asyncio.run(restarted.reindex())
        kpis.process(*message(i))
        if i >= cut:
            restarted.process(*message(i))
    if cut >= len(raw):
        restarted_table.update(table)
        asyncio.run(restarted.reindex())
    assert [h.totals[1:] for h in restarted.hours()] == [h.totals[1:] for h in kpis.hours()]


def test_only_the_partitions_held_count() -> None:
    """faust's memory store keeps what a worker wrote to a partition that moved on."""
    table = FakeTable()
    held = {0, 1}
    kpis = Kpis(FakeWindowed(table), 14 * 86_400, held=lambda: held)
    kpis.one(0, 0, JoinRecord("a", T, decision=2, amount=1.0))
    kpis.one(1, 0, JoinRecord("b", T, decision=2, amount=1.0))
    assert kpis.hours()[0].decisions(2) == 2
    held = {0}
    assert kpis.hours()[0].decisions(2) == 1
    asyncio.run(kpis.reindex())
    assert kpis.hours()[0].decisions(2) == 1
    held = {0, 1}  # partition 1 back, recovered: its state is read again
    asyncio.run(kpis.reindex())
    kpis.one(1, 1, JoinRecord("b", T, is_fraud=1))
    assert kpis.hours()[0].frauds(2) == 1
