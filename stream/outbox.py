"""Outputs scored but not committed yet: exactly-once keeps scoring while a commit is in flight.

A transactional producer holds one transaction at a time, so a batch's outputs can only be
produced once the previous batch's commit is done. Rather than wait for it, serve keeps
scoring the records that arrive meanwhile and keeps each batch's outputs here (the calls
that produce them, with the input offsets they cover). Once the commit is done they all go
into the next transaction, in input order, with the highest offsets of each partition.
Records thus reach the scorer as they arrive, and those scored during a commit ride in the
next one, instead of waiting in the consumer's queue for it and then, in a larger batch,
for one more commit.

Transactions are also spaced: the next commit starts ``interval_s`` after the last one
started at the earliest. Each transaction costs the broker and serve CPU whatever it carries (its
coordinator requests, the markers on every partition it wrote, the offsets): back to back,
about 100 per second at 2,000/s, that work competes with scoring for the same cores. The
wait never costs a deadline: what is held goes out as soon as the earliest held record's
deadline leaves no room for one more interval plus the expected produce-and-commit time.
While a transaction waits for its interval, what it holds is already produced into it
(``stage``), once no commit is in flight: the records' acknowledgements, and the broker's
checks before a transaction's first write to each partition, then happen during the wait,
and the commit, when due, sends the offsets and ends the transaction without waiting for
them. Until then the box still holds the offsets those batches cover.

At-least-once never waits for a commit: each batch is published at once.
"""

from __future__ import annotations

import math
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
    interval_s: float = 0.0
    """Least time from one transaction's start to the next one's (0: the next as soon as
    the previous commit is done; at-least-once never waits)."""
    clock: Callable[[], float] = time.monotonic
    records: int = 0
    """Input records whose outputs are held."""
    _writes: list[Write] = field(default_factory=list)
    _offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    _deadline_ms: float = math.inf
    """The earliest deadline of a held record (serve's wall clock, ms)."""
    _last_s: float = -math.inf
    """When the last transaction's commit started (``clock``)."""
    hold_ms: float = 0.0
    """While a batch is produced: how long it is expected to wait in the open transaction
    before the commit starts (part of what a read_committed reader waits for)."""

    def __bool__(self) -> bool:
        """Anything not committed: batches held, or produced into the open transaction."""
        return self.records > 0

    def add(
        self,
        offsets: list[TopicPartition],
        records: int,
        write: Write,
        deadline_ms: float = math.inf,
    ) -> None:
        """Hold one batch: its outputs' ``write``, the next offsets it covers and the
        earliest deadline among its records."""
        self._writes.append(write)
        for tp in offsets:
            self._offsets[(tp.topic, tp.partition)] = tp.offset  # later batches read further
        self.records += records
        self._deadline_ms = min(self._deadline_ms, deadline_ms)

    def should_wait(self, delivery: Delivery, now_ms: float, publish_ms: float) -> bool:
        """Hold the batch just added rather than publish now: there is room, and the previous
        commit is still in flight or the next transaction is not due (``due``)."""
        if self.records >= self.limit:
            return False
        return delivery.busy() or not self._due(now_ms, publish_ms)

    def due(self, delivery: Delivery, now_ms: float, publish_ms: float) -> bool:
        """What is held should go out now: no commit is in flight, and ``interval_s`` has
        passed since the last transaction started, or holding on for another interval would
        leave the earliest held deadline less than ``publish_ms`` (the expected time to
        produce and commit what is held)."""
        return bool(self) and not delivery.busy() and self._due(now_ms, publish_ms)

    def stage(self, delivery: Delivery, liveness: Liveness) -> None:
        """Produce what is held into the open transaction now, without committing it, when
        no commit is in flight: its acknowledgements then arrive while the transaction waits
        for its interval, and the commit, when due, only sends the offsets and ends it."""
        if self._writes and not delivery.busy():
            self._produce(delivery, liveness, self._last_s + self.interval_s - self.clock())

    def _produce(self, delivery: Delivery, liveness: Liveness, hold_s: float) -> None:
        """Open the transaction (``begin`` waits for the commit in flight, raising its
        failure) and produce every held batch into it, in order; the batches' offsets stay
        until the commit. On any failure the box is emptied: the consumer is rewound and
        the records come again."""
        writes, self._writes = self._writes, []
        try:
            liveness.beat("waiting for the previous commit")
            delivery.begin()
            self.hold_ms = max(hold_s, 0.0) * 1e3
            liveness.beat("producing")
            for write in writes:
                write()
        except BaseException:
            self.discard()
            raise
        finally:
            self.hold_ms = 0.0

    def _due(self, now_ms: float, publish_ms: float) -> bool:
        if self.clock() - self._last_s >= self.interval_s:
            return True
        return now_ms + self.interval_s * 1e3 + publish_ms >= self._deadline_ms

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
        self._produce(delivery, liveness, 0.0)
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]
        self.discard()
        self._last_s = self.clock()
        liveness.beat("committing")
        started = time.perf_counter()
        delivery.commit(offsets)
        timed(time.perf_counter() - started)

    def discard(self) -> None:
        self._writes, self._offsets, self.records = [], {}, 0
        self._deadline_ms = math.inf
