"""Records of several input partitions taken in timestamp order while they hold a backlog.

The input topic is keyed by customer, so each partition carries its customers in order; a
terminal's records come from every partition. Draining a backlog, the consumer hands over
what each fetch brought, partition after partition, and one partition can run days of event
time ahead of another: a terminal then gets its records out of order, which takes the
feature store off its append path and, once the gap passes the label delay, gives a
transaction terminal windows that miss records dated inside them, unlike the offline
computation. Kafka Streams' answer, kept here: per partition a staging queue, and records
leave the stagings merged by Kafka timestamp (the producer's clock, or the broker's with
``LogAppendTime``), each partition's in offset order, never past what a partition that
still has a backlog could bring next.

A partition holds the others back only while it has a backlog: at least ``min_lag`` records
past the last one taken (or past its committed offset, before it brings any), by the high
watermark its last fetch reported; until both are known, a newly assigned partition holds
back. One that is caught up is live: what it brings next is newer
than anything staged, so it holds nothing back and its records leave at once; a live stream
is never delayed for order, and transaction markers or a fetch in flight do not count as a
backlog. None holds the others back longer than ``max_idle_ms`` without bringing a record
while the consumer has nothing else queued, so a partition whose fetches stall costs only
that much order. A partition that stages ``cap`` records is paused (the consumer drops what
it had fetched of it and fetches it again from the same offset once resumed) and resumed at
half that, so a partition far ahead waits in the broker rather than in memory.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Item = tuple[Any, int, int]
"""A consumed record, the wall ms it was taken at and the wall ms its budget starts at
(``fraudstream.stream.serve`` buffers these)."""

MAX_IDLE_MS = 250
"""A partition with a backlog that brings nothing for this long, while the consumer has
nothing else queued, stops holding the others back."""
MIN_LAG = 256
"""Records a partition must have waiting in the broker to hold the others back: more than a
fetch brings at serve's live rates (``fetch.min.bytes`` of 8 KiB is about 40), and more
than the offsets transaction markers take."""
STAGE_CAP = 16_384
"""Records staged per partition at which it is paused: several of the consumer's fetches of
one partition (up to ``max.partition.fetch.bytes``, 1 MiB or about 5,000 transactions,
each), so that merging rarely has to pause (at 2,048 it paused on most fetches and the
drain lost a third), while a partition far ahead waits in the broker, not in memory (about
6 MB per partition of 400-byte records)."""


@dataclass
class PartitionAligner:
    """The stagings of the partitions one consumer reads (partitions of one topic)."""

    cap: int = STAGE_CAP
    """Staged records of one partition at which it is paused (resumed at half)."""
    max_idle_ms: int = MAX_IDLE_MS
    """See ``MAX_IDLE_MS``."""
    min_lag: int = MIN_LAG
    """See ``MIN_LAG``."""
    _staged: dict[int, deque[tuple[int, Item]]] = field(default_factory=dict)
    """Per partition, (timestamp ms, item) in offset order."""
    _newest: dict[int, int] = field(default_factory=dict)
    """Per partition, the largest timestamp taken from it so far."""
    _next: dict[int, int] = field(default_factory=dict)
    """Per partition, the offset after the last record taken."""
    _waiting: dict[int, int] = field(default_factory=dict)
    """Per partition with nothing staged, the wall ms since which it has held the others
    back (set at assignment, when resumed, and when its staging runs dry)."""
    _given_up: set[int] = field(default_factory=set)
    """Partitions that waited ``max_idle_ms`` for nothing: they hold nothing back until
    they bring a record again."""
    _held: int = 0
    _paused: set[int] = field(default_factory=set)
    _pause: set[int] = field(default_factory=set)
    _resume: set[int] = field(default_factory=set)

    def assign(self, partitions: list[int], now_ms: int) -> None:
        """Partitions newly read: each holds the others back until it brings a record (at
        most ``max_idle_ms``) or shows it is caught up."""
        for p in partitions:
            self._staged.setdefault(p, deque())
            self._waiting[p] = now_ms
            self._given_up.discard(p)

    def start(self, partition: int, offset: int) -> None:
        """Where a newly assigned partition's consumption starts (its committed offset):
        until it brings a record, its backlog is counted from there, so a caught-up
        partition holds nothing back from the moment this is known."""
        if partition in self._staged and partition not in self._next:
            self._next[partition] = offset

    def revoke(self, partitions: list[int]) -> None:
        """Partitions gone to another process: their staged records are dropped (not
        committed, the new owner reads them)."""
        for p in partitions:
            self._held -= len(self._staged.get(p, ()))
            for state in (self._staged, self._newest, self._next, self._waiting):
                state.pop(p, None)
            self._given_up.discard(p)
            self._paused.discard(p)
            self._pause.discard(p)
            self._resume.discard(p)

    def reset(self, now_ms: int) -> None:
        """The consumer was rewound (an aborted batch): staged records come again, every
        partition starts over as if just assigned, and the paused ones are resumed."""
        for p in self._staged:
            self._staged[p].clear()
            self._newest.pop(p, None)
            self._next.pop(p, None)
            self._waiting[p] = now_ms
        self._given_up.clear()
        self._held = 0
        self._resume |= self._paused
        self._pause.clear()
        self._paused.clear()

    def add(
        self, items: list[Item], partitions: list[int], offsets: list[int], stamps: list[int]
    ) -> None:
        """Consumed records (with their partitions, offsets and Kafka timestamps), in the
        consumer's order."""
        for item, p, offset, ts in zip(items, partitions, offsets, stamps, strict=True):
            staged = self._staged.get(p)
            if staged is None:  # a partition assigned before this aligner knew it
                staged = self._staged[p] = deque()
            staged.append((ts, item))
            if ts > self._newest.get(p, ts - 1):
                self._newest[p] = ts
            self._next[p] = offset + 1
            self._waiting.pop(p, None)
            self._given_up.discard(p)
        self._held += len(items)
        for p, staged in self._staged.items():
            if len(staged) >= self.cap and p not in self._paused:
                self._paused.add(p)
                self._pause.add(p)
                self._resume.discard(p)

    def release(
        self,
        ends: dict[int, int],
        now_ms: int,
        drained: bool = True,
        allow: Callable[[Item], bool] | None = None,
        leading: frozenset[int] = frozenset(),
    ) -> list[Item]:
        """The staged records that can go, merged by timestamp. ``ends``: per partition the
        high watermark the consumer last saw (missing: not known). ``drained``: the
        consumer had nothing more queued; while it still had, a partition waited for may
        be queued behind the others' records, and its wait does not count. ``allow``: a
        further bound (the group's, ``fraudstream.stream.group_order``), monotone along
        each partition: a partition goes up to its first record not allowed, but one in
        ``leading`` (those the bound waits for) takes at least one record."""
        if not drained:
            for p in self._waiting:
                if p not in self._given_up:
                    self._waiting[p] = now_ms
        frontier = self._frontier(ends, now_ms)
        runs = []
        for p, staged in self._staged.items():
            run = []
            while staged and staged[0][0] <= frontier:
                run.append(staged.popleft())
            if run and allow is not None and not allow(run[-1][1]):
                cut = max(_first_refused(run, allow), int(p in leading))
                staged.extendleft(reversed(run[cut:]))
                del run[cut:]
            if run:
                runs.append(run)
        self._held -= sum(len(run) for run in runs)
        if len(runs) == 1:
            out = [item for _, item in runs[0]]
        else:  # each run keeps its offset order; heads go by timestamp
            out = [item for _, item in heapq.merge(*runs, key=lambda r: r[0])]
        for p in list(self._paused):
            if len(self._staged[p]) <= self.cap // 2:
                self._paused.discard(p)
                self._pause.discard(p)
                self._resume.add(p)
                self._waiting[p] = now_ms  # its fetches start again from here
        return out

    def _frontier(self, ends: dict[int, int], now_ms: int) -> float:
        """The newest timestamp that can go: the least, over partitions holding the others
        back, of the newest timestamp each has brought (infinite when none holds back)."""
        least = float("inf")
        for p in self._staged:
            if self._holds_back(p, ends.get(p), now_ms):
                least = min(least, self._newest.get(p, float("-inf")))
        return least

    def _holds_back(self, p: int, end: int | None, now_ms: int) -> bool:
        """Whether partition ``p`` may still bring records older than what is staged."""
        if p in self._given_up:
            return False
        if not self._staged[p]:
            since = self._waiting.setdefault(p, now_ms)
            if now_ms - since > self.max_idle_ms:
                self._given_up.add(p)
                return False
        lag = self._lag(p, end)
        if lag is None:  # not known yet: it may be far behind
            return not self._staged[p]
        return lag >= self.min_lag

    def _lag(self, p: int, end: int | None) -> int | None:
        """Records of ``p`` waiting in the broker past the last one taken, by ``end`` (its
        high watermark); None while either is not known."""
        taken = self._next.get(p)
        if end is None or end < 0 or taken is None:
            return None
        return end - taken

    def caught_up(self, ends: dict[int, int]) -> dict[int, int]:
        """The partitions with nothing staged and fewer than ``min_lag`` records (as in
        ``release``) left in the broker by ``ends``, each with that count. Records staged
        are a backlog too, although ``release`` merges them: one partition of a replay
        written at once can stage 16,384 records, days of event time, with nothing left to
        fetch."""
        out = {}
        for p, staged in self._staged.items():
            if staged:
                continue
            lag = self._lag(p, ends.get(p))
            if lag is not None and lag < self.min_lag:
                out[p] = lag
        return out

    def flow(self) -> tuple[list[int], list[int]]:
        """Partitions to pause and to resume since the last call."""
        pause, resume = sorted(self._pause), sorted(self._resume)
        self._pause.clear()
        self._resume.clear()
        return pause, resume

    def staged(self, partition: int) -> int:
        """Records of ``partition`` taken from the consumer and not yet released."""
        return len(self._staged.get(partition, ()))

    @property
    def held(self) -> int:
        """Records staged, not yet released."""
        return self._held

    @property
    def paused(self) -> frozenset[int]:
        """Partitions paused for staging too much."""
        return frozenset(self._paused)

    @property
    def paused_count(self) -> int:
        """How many partitions are paused (safe to read from another thread)."""
        return len(self._paused)

    @property
    def idle(self) -> bool:
        """Nothing staged and no pause or resume to pass on: a release would do nothing."""
        return self._held == 0 and not (self._paused or self._pause or self._resume)


def _first_refused(run: list[tuple[int, Item]], allow: Callable[[Item], bool]) -> int:
    """The index of the first record of ``run`` (its last refused) that ``allow`` refuses,
    by bisection."""
    lo, hi = 0, len(run) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if allow(run[mid][1]):
            lo = mid + 1
        else:
            hi = mid
    return lo
