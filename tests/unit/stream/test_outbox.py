"""The outbox: batches scored while a commit is in flight go out together, in order."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from fraudstream.stream.delivery import BatchAborted
from fraudstream.stream.liveness import Liveness
from fraudstream.stream.outbox import Outbox


class _Delivery:
    """Records the calls the outbox makes (the real deliveries are tested on a broker);
    typed ``Any`` where it stands in for a ``Delivery``."""

    def __init__(self, busy: bool = False, fails: bool = False) -> None:
        self.calls: list[object] = []
        self._busy, self._fails = busy, fails

    def busy(self) -> bool:
        return self._busy

    def begin(self) -> None:
        if self._fails:
            msg = "the previous commit failed"
            raise BatchAborted(msg)
        self.calls.append("begin")

    def commit(self, offsets: list[TopicPartition]) -> None:
        self.calls.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))


def _fake(busy: bool = False, fails: bool = False) -> Any:
    return _Delivery(busy, fails)


def _tp(partition: int, offset: int) -> TopicPartition:
    return TopicPartition("in", partition, offset)


def test_a_batch_waits_only_while_a_commit_is_in_flight_and_there_is_room() -> None:
    box = Outbox(limit=10)
    box.add([_tp(0, 5)], 4, lambda: None)
    assert not box.should_wait(_fake(busy=False), 0, 5)  # at-least-once, or the commit is done
    assert box.should_wait(_fake(busy=True), 0, 5)
    box.add([_tp(0, 11)], 6, lambda: None)
    assert box.records == 10
    assert not box.should_wait(_fake(busy=True), 0, 5)  # full: wait for the commit instead


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_transactions_start_an_interval_apart() -> None:
    clock = _Clock()
    box = Outbox(limit=100, interval_s=0.015, clock=clock)
    idle = _fake(busy=False)
    box.add([_tp(0, 1)], 1, lambda: None, deadline_ms=1_000)
    assert not box.should_wait(idle, 0, 5)  # the first transaction goes at once
    box.publish(idle, Liveness(60))
    clock.now += 0.010
    box.add([_tp(0, 2)], 1, lambda: None, deadline_ms=1_000)
    assert box.should_wait(idle, 10, 5) and not box.due(idle, 10, 5)  # 10 ms after: held
    clock.now += 0.005
    assert box.due(idle, 15, 5)  # 15 ms after the last one started
    assert not box.due(_fake(busy=True), 15, 5)  # never while a commit is in flight
    box.publish(idle, Liveness(60))
    assert not box.due(idle, 15, 5)  # nothing held


def test_the_interval_never_costs_a_held_deadline() -> None:
    clock = _Clock()
    box = Outbox(limit=100, interval_s=0.015, clock=clock)
    idle = _fake(busy=False)
    box.add([_tp(0, 1)], 1, lambda: None)
    box.publish(idle, Liveness(60))
    box.add([_tp(0, 2)], 1, lambda: None, deadline_ms=1_050)
    box.add([_tp(0, 3)], 1, lambda: None, deadline_ms=1_040)  # the earliest counts
    # 1,010 + 15 (another interval) + 10 (produce and commit) < 1,040: it can wait
    assert box.should_wait(idle, 1_010, 10)
    # at 1,016 it could not: out now, though the interval has not passed
    assert not box.should_wait(idle, 1_016, 10) and box.due(idle, 1_016, 10)
    box.publish(idle, Liveness(60))
    box.add([_tp(0, 4)], 1, lambda: None, deadline_ms=5_000)
    assert box.should_wait(idle, 1_016, 10)  # published: the next deadline is the new one


def test_everything_held_goes_into_one_transaction_in_order_with_the_last_offsets() -> None:
    box = Outbox(limit=100)
    delivery = _fake()
    box.add([_tp(0, 5), _tp(1, 3)], 3, lambda: delivery.calls.append("batch 1"))
    box.add([_tp(0, 9)], 4, lambda: delivery.calls.append("batch 2"))
    box.add([_tp(2, 1)], 1, lambda: delivery.calls.append("batch 3"))
    box.publish(delivery, Liveness(60))
    assert delivery.calls == [
        "begin",
        "batch 1",
        "batch 2",
        "batch 3",
        [("in", 0, 9), ("in", 1, 3), ("in", 2, 1)],
    ]
    assert not box and box.records == 0


def test_an_aborted_transaction_empties_the_box_and_writes_nothing() -> None:
    box = Outbox(limit=100)
    delivery = _fake(fails=True)
    box.add([_tp(0, 5)], 5, lambda: delivery.calls.append("written"))
    with pytest.raises(BatchAborted):
        box.publish(delivery, Liveness(60))
    assert delivery.calls == []
    assert not box and box.records == 0  # the consumer was rewound: the records come again


def test_what_waits_for_its_interval_is_produced_at_once_and_committed_when_due() -> None:
    clock = _Clock()
    box = Outbox(limit=100, interval_s=0.015, clock=clock)
    delivery = _fake()
    box.add([_tp(0, 1)], 1, lambda: delivery.calls.append("batch 1"))
    box.publish(delivery, Liveness(60))
    clock.now += 0.005
    holds: list[float] = []
    box.add([_tp(0, 2)], 1, lambda: holds.append(box.hold_ms), deadline_ms=1_000)
    box.add([_tp(1, 7)], 2, lambda: delivery.calls.append("batch 3"), deadline_ms=1_000)
    assert box.should_wait(delivery, 0, 5)
    box.stage(delivery, Liveness(60))
    assert holds == [pytest.approx(10.0)]  # produced 5 ms after the last start: 10 ms to go
    assert box.hold_ms == 0.0
    assert box and box.records == 3  # produced, not committed: still held
    assert not box.due(delivery, 0, 5)
    clock.now += 0.010
    assert box.due(delivery, 0, 5)
    box.publish(delivery, Liveness(60))
    assert delivery.calls == [
        "begin",
        "batch 1",
        [("in", 0, 1)],
        "begin",
        "batch 3",
        "begin",  # the delivery keeps the open transaction
        [("in", 0, 2), ("in", 1, 7)],
    ]
    assert not box and box.records == 0


def test_nothing_is_produced_while_a_commit_is_in_flight() -> None:
    box = Outbox(limit=100, interval_s=0.015)
    busy = _fake(busy=True)
    box.add([_tp(0, 2)], 1, lambda: busy.calls.append("written"))
    box.stage(busy, Liveness(60))
    assert busy.calls == [] and box.records == 1


def test_a_failed_commit_found_when_staging_empties_the_box() -> None:
    box = Outbox(limit=100, interval_s=0.015)
    delivery = _fake(fails=True)
    box.add([_tp(0, 5)], 5, lambda: delivery.calls.append("written"))
    with pytest.raises(BatchAborted):
        box.stage(delivery, Liveness(60))
    assert delivery.calls == []
    assert not box and box.records == 0
