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
    assert not box.should_wait(_fake(busy=False))  # at-least-once, or the commit is done
    assert box.should_wait(_fake(busy=True))
    box.add([_tp(0, 11)], 6, lambda: None)
    assert box.records == 10
    assert not box.should_wait(_fake(busy=True))  # full: wait for the commit instead


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
