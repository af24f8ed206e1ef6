"""The KPI join's state in one faust table, windowed by hour of event time (tumbling, 1 h).

Keys, within the window of the transaction's hour: ``p:<partition>`` holds the hour's
statistics for that join partition, and ``b:<partition>:<offset>`` the states of the
transactions that join message ``offset`` changed in that hour (``{transaction id: state}``).
One state record per message and hour, not per transaction: each table write is a changelog
record, and faust's per-record cost was most of the worker's CPU per decision. The
transactions' current states are indexed in memory (rebuilt from the table after each
recovery). All of a message's keys live in one changelog partition (the join message's),
statistics written first, so a crash between the writes is repaired by the hours' offset
marks (see ``fraudstream.features.labels.join``). faust's own window expiry runs on the wall
clock, which would erase replayed history at once (and without expiry its tumbling windows
still track every write); the table uses ``EventHourWindow`` and this module expires windows
by event time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from faust.types.windows import WindowRange, WindowT
from mode.utils.times import Seconds, want_seconds

from fraudstream.features.labels.join import Delta, HourStats, TxState, add, merge, transition
from fraudstream.features.labels.kpis import HourKpis, summarize
from fraudstream.features.labels.records import JoinRecord

logger = logging.getLogger(__name__)

HOUR_S = 3600.0
Key = tuple[str, WindowRange]
PURGE_EVERY_S = 6 * HOUR_S
"""Event time between two scans for expired windows in a partition."""
MAX_AHEAD_S = 86_400.0
"""Event times further ahead of the wall clock are ignored."""


class EventHourWindow(WindowT):
    """Tumbling one-hour windows that faust never expires (``expires`` None)."""

    expires = None
    size = HOUR_S

    def ranges(self, timestamp: float) -> list[WindowRange]:
        return [self.current(timestamp)]

    def stale(self, timestamp: float, latest_timestamp: float) -> bool:
        return False

    def current(self, timestamp: float) -> WindowRange:
        start = math.floor(timestamp / HOUR_S) * HOUR_S
        return (start, start + HOUR_S - 0.1)  # faust's convention for a window's end

    def earliest(self, timestamp: float) -> WindowRange:
        return self.current(timestamp)

    def delta(self, timestamp: float, d: Seconds) -> WindowRange:
        return self.current(timestamp - want_seconds(d))


class KpiTable:
    """Join and aggregate over a faust table windowed by ``EventHourWindow``.

    Must be called from the agent that consumes the join topic: faust sends each change to
    the changelog partition of the event being processed.
    """

    def __init__(
        self,
        windowed: Any,
        retention_s: float,
        held: Callable[[], set[int] | None] = lambda: None,
    ) -> None:
        """``held``: the join partitions this worker processes now (None: unknown, all). faust's
        memory store keeps what this worker wrote to a partition after the partition moved to
        another worker; only the held ones count."""
        self._table: Any = windowed.table
        self._held = held
        self._window: Any = self._table.window
        self._retention_s = retention_s
        self._latest: dict[int, float] = {}
        self._purged_at: dict[int, float] = {}
        self._stats_keys: set[Key] = set()
        self._states: dict[int, dict[WindowRange, dict[str, TxState]]] = {}
        """partition -> hour -> transaction id -> state: what the table's state records say,
        the latest per transaction."""
        self.ignored = 0
        """Records older than the retention, or more than a day ahead of the clock."""

    def process(self, partition: int, offset: int, records: Sequence[JoinRecord]) -> int:
        """Apply one join message (all for ``partition``); returns how many of its records
        were within the retention. Each touched hour's statistics are written once, with
        ``offset`` as mark, then each hour's changed transaction states, in one record."""
        held = self._states.setdefault(partition, {})
        changed: dict[WindowRange, dict[str, TxState]] = {}
        deltas: dict[WindowRange, Delta] = {}
        used = 0
        for record in records:
            window = self._window_of(partition, record)
            if window is None:
                continue
            tx = record.transaction_id
            pending = changed.get(window)
            if pending is not None and tx in pending:
                state: TxState | None = pending[tx]
            else:
                state = held.get(window, {}).get(tx)
            new_state, delta = transition(state, record)
            if new_state != state:
                changed.setdefault(window, {})[tx] = new_state
            if delta:
                merged = deltas.setdefault(window, {})
                for index, step in delta.items():
                    merged[index] = merged.get(index, 0) + step
            used += 1
        for window, delta in deltas.items():
            stats_key = (f"p:{partition}", window)
            stats = add(self._table.get(stats_key), delta, offset)
            if stats is not None:
                self._table[stats_key] = stats
                self._stats_keys.add(stats_key)
        for window, states in changed.items():
            self._table[(f"b:{partition}:{offset}", window)] = states
            held.setdefault(window, {}).update(states)
        self._maybe_purge(partition, self._latest.get(partition, 0.0))
        return used

    def _window_of(self, partition: int, record: JoinRecord) -> WindowRange | None:
        """The record's hour; None (counted in ``ignored``) when it is past the retention,
        or so far ahead of the clock that it would push every other record past it."""
        ts = record.event_time_ms / 1000.0
        if ts > time.time() + MAX_AHEAD_S:
            self.ignored += 1
            return None
        latest = max(self._latest.get(partition, ts), ts)
        self._latest[partition] = latest
        if ts < latest - self._retention_s:
            self.ignored += 1
            return None
        window: WindowRange = self._window.current(ts)
        return window

    def hours(self, last: int | None = None) -> list[HourKpis]:
        """The KPIs of the hours held by this worker (all its partitions), oldest first."""
        rows: list[tuple[int, HourStats]] = []
        held = self._held()
        for key in list(self._stats_keys):
            if held is not None and int(key[0][2:]) not in held:
                continue
            stats = self._table.get(key)
            if stats is None:  # its partition went to another worker, or it expired
                self._stats_keys.discard(key)
            else:
                rows.append((int(key[1][0]), stats))
        return summarize(rows, last)

    async def reindex(self) -> None:
        """Rebuild the hours' statistics keys and the transactions' states from the table
        (after a recovery: the table now holds exactly this worker's partitions)."""
        stats_keys: set[Key] = set()
        found: list[tuple[int, int, Key]] = []
        held = self._held()
        for key in list(self._table.keys()):
            name = key[0]
            if name.startswith("p:"):
                stats_keys.add(key)
            elif name.startswith(("b:", "t:")):
                partition, _, rest = name[2:].partition(":")
                if held is not None and int(partition) not in held:
                    continue
                # t: keys (one transaction each) come from workers before batched records
                order = int(rest) if name[0] == "b" else -1
                found.append((int(partition), order, key))
        states: dict[int, dict[WindowRange, dict[str, TxState]]] = {}
        for partition, order, key in sorted(found, key=lambda f: (f[0], f[1])):
            value = self._table.get(key)
            if value is None:
                continue
            if order < 0:
                value = {key[0].split(":", 2)[2]: value}
            hour = states.setdefault(partition, {}).setdefault(key[1], {})
            for tx, state in value.items():
                hour[tx] = merge(hour.get(tx), state)
        self._stats_keys, self._states = stats_keys, states

    def _maybe_purge(self, partition: int, latest: float) -> None:
        last = self._purged_at.get(partition)
        if last is not None and latest - last < PURGE_EVERY_S:
            return
        self._purged_at[partition] = latest
        cutoff = latest - self._retention_s
        prefixes = (f"b:{partition}:", f"t:{partition}:", f"p:{partition}")
        expired = [
            k
            for k in list(self._table.keys())
            if k[1][1] < cutoff and k[0].startswith(prefixes) and _same_partition(k[0], partition)
        ]
        for k in expired:
            del self._table[k]
            self._stats_keys.discard(k)
        held = self._states.get(partition, {})
        for window in [w for w in held if w[1] < cutoff]:
            del held[window]
        if expired:
            logger.info(
                "partition %d: %d KPI entries older than the retention", partition, len(expired)
            )


def _same_partition(key: str, partition: int) -> bool:
    """``p:1`` must not match ``p:12``; ``b:1:x`` already cannot match ``b:12:x``."""
    return not key.startswith("p:") or key == f"p:{partition}"
