"""Several serve processes of one group kept within a bound of event time of one another.

``fraudstream.stream.alignment`` takes one process's partitions in order. A group drains a
backlog with each process on its own partitions, and one process can run ahead of another
(a slower machine, a process stalled or stopped until the group takes its partitions away).
A terminal's features at ``t`` read its records up to ``t - d`` (the label delay, 7 days)
from every partition: a process more than ``d`` ahead of another computes them without
records the offline computation has. So each process publishes, per partition it owns, the
event time it has come to (its watermark, ``fraudstream.stream.watermark``: the partition's
records before it are applied), in one Redis hash per group and input topic, and the
aligner releases no record dated more than ``slack`` past the least mark of the group
(``PartitionAligner.release``'s ``allow``): with ``slack`` below ``d``, a record's delayed
windows only read what the group has applied.

A mark says whether the partition is caught up and when it was written (Redis's clock). A
partition bounds the group unless:

* it is caught up and its mark is fresh (``LIVE_FRESH_MS``): everything it has brought is
  applied (nothing staged in the aligner or waiting in the loop) and the broker holds fewer
  than the aligner's ``min_lag`` records past it. What it brings next is then newer than
  anything behind on a live stream, which it never holds back (``LIVE_WINDOW_MS``); but
  not on a history written at full speed into caught-up processes, where its owner learns
  of days of event time only at its next fetch. So past a caught-up mark's ``slack`` a
  record of a history goes only if the mark is ``DRAINED`` (at most a transaction marker
  left in the broker) and was written ``CERTIFY_MARGIN_MS`` after the record (Kafka
  timestamp): such a history waits two seconds or so for the owners' next marks, or for
  them to show its backlog. A caught-up partition whose owner went silent bounds the group
  from its mark on, which costs a live stream nothing until the silence is ``slack`` long;
* its mark is older than ``STALE_MS``: its owner left the group long ago (the session
  timeout is 6 s) and its next owner has not applied a record of it yet.

A partition a process has just been given keeps its previous owner's mark until the new
owner has applied some of it, so the new owner's other partitions wait for it. The bound is
per partition, in the aligner's release, and a partition at the floor takes its next
record even past it (however sparse its records, the group never waits on itself).
Should Kafka timestamps disagree with event time so far that processes wait on one another
anyway, one with nothing to do passes a floor that has not moved for ``MAX_HOLD_S`` (what it
has staged then goes; it waits again after). With
Redis unreachable the bound is lifted: features are partial then, and order would only stop
the ladder.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from fraudstream.features.redis_lua_files import read_lua
from fraudstream.features.validation import time_ms

logger = logging.getLogger(__name__)

INTERVAL_S = 0.1
"""How often a process publishes its marks and reads the group's floor."""
LIVE_FRESH_MS = 1_000
"""A caught-up partition's mark bounds nothing while it is younger than this (ten
publications)."""
STALE_MS = 60_000
"""A mark older than this bounds nothing (its partition has another owner by then)."""
KEY_TTL_MS = 7 * 86_400_000
"""The hash goes away this long after the group last wrote it."""
DEFAULT_SLACK_S = 6 * 86_400
"""How far past the group's floor a process may go: a day inside the 7-day label delay, for
the watermark's lag behind the newest record applied and records in flight."""
CERTIFY_MARGIN_MS = 2_000
"""A drained mark written at ``w`` vouches for the records written up to ``w`` less this:
its owner's view of the partition's end comes from its last fetch (half a second apart
at most when nothing arrives, much later on a starved machine: 500 ms was seen to be too
little on two busy cores), and a record's Kafka timestamp is the producer's clock (or the
broker's), not Redis's."""
REPORT_FRESH_S = 0.5
"""Marks the loop reported longer ago than this are published as caught up at most, never
drained."""
LIVE_WINDOW_MS = 86_400_000
"""A record dated within a day of the wall clock is live: the records still to come on a
live stream are dated at most this long before it (a label delay is 7 days), so what a
caught-up partition brings next cannot be a label delay behind it, and it never waits for
a quiet partition's owner to vouch for it."""
MAX_HOLD_S = 30.0
"""Longest a process waits on a floor that does not move (well past a rebalance after a
session timeout)."""

SCRIPT = read_lua("group_order.lua")
"""Publishes marks and returns the server's clock and the whole hash."""

BACKLOG, CAUGHT_UP, DRAINED = 0, 1, 2
"""A partition's state in its mark: records wait for it; it is caught up (everything it
brought applied, fewer than the aligner's ``min_lag`` records left in the broker); drained
(at most ``DRAINED_LAG`` left: a transaction marker), so that its mark vouches for every
record written before it."""
DRAINED_LAG = 1


def state_of(caught_up_lag: int | None) -> int:
    """A partition's state from the records left in the broker once everything it brought
    is applied and it is caught up (None: it is not)."""
    if caught_up_lag is None:
        return BACKLOG
    return DRAINED if caught_up_lag <= DRAINED_LAG else CAUGHT_UP


Marks = Mapping[int, tuple[int, int]]
"""Partition -> (event time ms its owner has come to, its state)."""


def key_of(prefix: str, group: str, topic: str) -> str:
    """The hash of one group's marks for one input topic (one cluster slot)."""
    return f"{prefix}:{{order:{group}:{topic}}}"


def encode(marks: Marks) -> list[str]:
    """The script's arguments: the hash's TTL, then partition, ``ts:state``, ..."""
    args: list[str] = [str(KEY_TTL_MS)]
    for partition, (ts, state) in sorted(marks.items()):
        args += [str(partition), f"{int(ts)}:{int(state)}"]
    return args


class Bound(NamedTuple):
    """The group's marks as one process reads them (event time ms; infinite: none)."""

    floor: float
    """The least mark that bounds the group."""
    at: frozenset[int]
    """The partitions at ``floor``."""
    live_floor: float = math.inf
    """The least caught-up mark whose owner answers."""
    certified_ms: float = math.inf
    """Every record written (Kafka timestamp) up to this is applied by the owners of the
    caught-up partitions: their marks' write times less ``CERTIFY_MARGIN_MS`` if they are
    all drained, else none (-inf)."""


UNBOUNDED = Bound(math.inf, frozenset())


def floor_of(
    fields: Mapping[Any, Any],
    now_ms: int,
    live_fresh_ms: int = LIVE_FRESH_MS,
    stale_ms: int = STALE_MS,
) -> Bound:
    """The group's ``Bound`` from the hash's fields (partition -> ``ms:state:written``)
    and the server's clock."""
    least: float = math.inf
    at: set[int] = set()
    live: float = math.inf
    certified: float = math.inf
    for name, raw in fields.items():
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        parts = value.split(":")
        try:
            partition, ts, written = int(name), int(parts[0]), int(parts[2])
            state = int(parts[1])
        except (IndexError, ValueError):
            logger.warning("group order: unreadable mark %r ignored", value)
            continue
        age = now_ms - written
        if age > stale_ms:
            continue
        if state in (CAUGHT_UP, DRAINED) and age <= live_fresh_ms:
            live = min(live, ts)
            vouches = written - CERTIFY_MARGIN_MS if state == DRAINED else -math.inf
            certified = min(certified, vouches)
            continue
        if ts < least:
            least, at = ts, set()
        if ts == least:
            at.add(partition)
    return Bound(least, frozenset(at), live, certified)


def allowed(
    event_ms: int | None, written_ms: int | None, fetched_ms: int | None, limits: Limits
) -> bool:
    """Whether a record dated ``event_ms``, written (Kafka timestamp) at ``written_ms`` and
    fetched at ``fetched_ms`` (wall clock) may go: up to the ceiling of the marks that
    bound; past the ceiling of the caught-up marks only when it is live (dated within
    ``LIVE_WINDOW_MS`` of its fetch) or was written before their owners last found nothing
    to apply. Monotone along a partition's records (both times grow with the offset)
    unless a history is written into a live topic, whose order nothing defines."""
    ceiling, _, live_ceiling, certified = limits
    if event_ms is None or event_ms <= min(ceiling, live_ceiling):
        return True
    if event_ms > ceiling:
        return False
    if fetched_ms is not None and event_ms >= fetched_ms - LIVE_WINDOW_MS:
        return True
    return written_ms is None or written_ms <= certified


class Limits(NamedTuple):
    """What ``allowed`` checks a record against (ms)."""

    ceiling: float
    at_floor: frozenset[int]
    live_ceiling: float
    certified_ms: float


def event_time_of(value: bytes | None) -> int | None:
    """A transaction's event time (epoch ms) from its raw value, read as decoding reads it;
    None when it has none (such a record is not held: decoding dead-letters it)."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return time_ms(doc.get("event_time")) if isinstance(doc, dict) else None


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


Eval = Callable[[str, str, Sequence[str]], Any]
"""``(script, key, args)`` run on the feature store's Redis (``RedisStore.eval_on_key``)."""


class GroupOrder:
    """Publishes this process's marks and keeps the group's floor, on its own thread."""

    def __init__(
        self,
        run: Eval,
        key: str,
        slack_ms: int,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self._run = run
        self.key = key
        self.slack_ms = slack_ms
        self.interval_s = interval_s
        self._marks: Marks = {}
        self._reported_at = time.monotonic()
        self.bound: Bound = UNBOUNDED
        """The group's bound as of the last sync (one attribute: read whole, never torn)."""
        self.errors = 0
        """Syncs that failed (the floor is lifted until one succeeds)."""
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="group-order")

    def report(self, marks: Marks) -> None:
        """This process's marks now (the loop's thread): published at the next sync."""
        self._marks = dict(marks)
        self._reported_at = time.monotonic()

    def _publishable(self) -> Marks:
        """The marks as reported; a report older than ``REPORT_FRESH_S`` (the loop stalled)
        claims no partition drained: its view of the partitions' ends is that old, so it
        vouches for no record of a history (live records need no voucher)."""
        marks = self._marks
        if time.monotonic() - self._reported_at <= REPORT_FRESH_S:
            return marks
        return {p: (ts, min(state, CAUGHT_UP)) for p, (ts, state) in marks.items()}

    @property
    def floor(self) -> float:
        """The least mark bounding the group (event time ms; infinite: none)."""
        return self.bound[0]

    def limits(self) -> Limits:
        """The latest event time a record may have (ms); the partitions at the floor (each
        may take its next record past it: it is what the group waits for); the latest a
        record may have unless written by ``certified_ms`` (``allowed``)."""
        b = self.bound
        return Limits(b.floor + self.slack_ms, b.at, b.live_floor + self.slack_ms, b.certified_ms)

    def start(self) -> GroupOrder:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self.interval_s + 1.0)

    def sync(self) -> None:
        """Publish the marks and read the floor once."""
        try:
            now, flat = self._run(SCRIPT, self.key, encode(self._publishable()))
            self.bound = floor_of(_pairs(flat), int(now))
        except Exception as exc:  # noqa: BLE001 - order is best kept, never a stop
            self.errors += 1
            self.bound = UNBOUNDED
            if not self._failing:
                logger.warning("group order off until Redis answers: %s", exc)
            self._failing = True
            return
        if self._failing:
            logger.info("group order on again")
        self._failing = False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sync()
