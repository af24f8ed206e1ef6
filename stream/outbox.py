"""Outputs scored but not produced yet: exactly-once keeps scoring while a commit is in flight.

A transactional producer holds one transaction at a time, so a batch's outputs can only be
produced once the previous batch's commit is done. Rather than wait for it, serve keeps
scoring the records that arrive meanwhile and keeps each batch's outputs here (the calls
that produce them, with the input offsets they cover). Once the commit is done they all go
into the next transaction, in input order, with the highest offsets of each partition.
Records thus reach the scorer as they arrive, and those scored during a commit ride in the
next one, instead of waiting in the consumer's queue for it and then, in a larger batch,
for one more commit.

At-least-once never waits for a commit: each batch is published at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from fraudstream.stream.delivery import Delivery
from fraudstream.stream.liveness import Liveness

Write = Callable[[], None]
"""Produces one batch's outputs (decisions, alerts, dead letters, shadow scores)."""


@dataclass
class Outbox:
    """Batches waiting for the next transaction (see the module docstring)."""

    limit: int
    """Records held at most; past it the loop waits for the commit instead."""
    records: int = 0
    """Input records whose outputs are held."""
    _writes: list[Write] = field(default_factory=list)
    _offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self._writes)

    def add(self, offsets: list[TopicPartition], records: int, write: Write) -> None:
        """Hold one batch: its outputs' ``write`` and the next offsets it covers."""
        self._writes.append(write)
        for tp in offsets:
            self._offsets[(tp.topic, tp.partition)] = tp.offset  # later batches read further
        self.records += records

    def should_wait(self, delivery: Delivery) -> bool:
        """Hold the batch just added rather than publish now: the previous commit is still
        in flight and there is room."""
        return delivery.busy() and self.records < self.limit

    def publish(
        self,
        delivery: Delivery,
        liveness: Liveness,
        timed: Callable[[float], None] = lambda _s: None,
    ) -> None:
        """One transaction (exactly-once) or one in-flight batch (at-least-once) for
        everything held, in the order it was scored; the box is empty afterwards, also when
        the delivery aborts (the consumer is then rewound and the records come again).
        ``timed`` gets the seconds the ``commit`` call took."""
        writes, offsets = self._writes, self._offsets
        self.discard()
        liveness.beat("waiting for the previous commit")
        delivery.begin()
        liveness.beat("producing")
        for write in writes:
            write()
        liveness.beat("committing")
        started = time.perf_counter()
        delivery.commit([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        timed(time.perf_counter() - started)

    def discard(self) -> None:
        self._writes, self._offsets, self.records = [], {}, 0
