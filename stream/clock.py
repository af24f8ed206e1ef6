"""Where a record's latency budget starts: its Kafka timestamp, corrected for the clock of
the producer that set it.

A record's Kafka timestamp is taken by the producer's clock (``CreateTime``). A producer
whose clock runs behind makes every record look older than it is (and late); one whose
clock runs ahead makes records look younger (latency below zero, lateness hidden). The
rule, per input partition:

- Fresh records (at most ``head_lag`` records from their partition's end when fetched:
  they reached serve as soon as the broker had them) give the transit ``fetched - ts``;
  its floor over the last ``window_s`` seconds is what the partition's clock adds to a
  record's true transit, plus the broker's own floor (a few ms).
- A floor below zero (the producer is ahead) is subtracted in full; a floor above
  ``tolerance_ms`` (the producer is behind) is subtracted down to ``tolerance_ms``; within
  the tolerance timestamps are taken as they are.
- A backlog (records far from their partition's end) gives no sample: old records are
  never mistaken for a clock behind. Records of a partition with no sample yet keep their
  timestamps.
- Whatever the correction, a budget never starts after the record reached serve, so
  reported latency is never negative.

What this cannot tell apart: a constant delay before the broker (a producer lingering
100 ms) looks like a clock 100 ms behind, and all but ``tolerance_ms`` of it is taken for
skew. The correction per partition is exported (``fraudstream_producer_clock_skew_seconds``)
so that operators see it; with ``LogAppendTime`` input topics the broker's clock sets the
timestamps and no producer skew applies.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass
class SkewTracker:
    """Per-partition transit floors of fresh records, and the timestamp correction."""

    tolerance_ms: float = 20.0
    """A floor from 0 up to this is the broker's transit, not skew."""
    window_s: float = 30.0
    """How long a transit sample counts."""
    head_lag: int = 64
    """A record this close to its partition's end when fetched counts as fresh."""
    _floors: dict[int, deque[tuple[int, float]]] = field(default_factory=dict)
    """Partition -> (wall second, least transit that second), oldest first."""

    def observe(
        self,
        partition: IntArray,
        offset: IntArray,
        timestamp_ms: IntArray,
        fetched_ms: IntArray,
        end_offsets: dict[int, int],
    ) -> None:
        """Take the transits of fresh records fetched at ``fetched_ms``. ``end_offsets``:
        each partition's high-water mark when they were fetched (missing: not known)."""
        for p in np.unique(partition).tolist():
            end = end_offsets.get(p, -1)
            if end < 0:
                continue
            rows = (partition == p) & (offset >= end - self.head_lag)
            if not rows.any():
                continue
            transit = float(np.min(fetched_ms[rows] - timestamp_ms[rows]))
            self._add(p, int(np.max(fetched_ms[rows])) // 1000, transit)

    def correction_ms(self, partition: int) -> float:
        """Milliseconds added to the partition's timestamps (negative: producer ahead)."""
        floors = self._floors.get(partition)
        if not floors:
            return 0.0
        floor = min(t for _, t in floors)
        if floor < 0:
            return floor
        return max(floor - self.tolerance_ms, 0.0)

    def corrections(self) -> dict[int, float]:
        """The correction of every partition seen."""
        return {p: self.correction_ms(p) for p in self._floors}

    def starts(self, partition: IntArray, timestamp_ms: IntArray, fetched_ms: IntArray) -> IntArray:
        """Where each record's budget starts (epoch ms): its corrected timestamp, never
        after it reached serve."""
        shift = np.zeros(partition.shape[0], dtype=np.float64)
        for p in np.unique(partition).tolist():
            c = self.correction_ms(p)
            if c:
                shift[partition == p] = c
        corrected = timestamp_ms + np.rint(shift).astype(np.int64)
        out: IntArray = np.minimum(corrected, fetched_ms)
        return out

    def forget(self, partition: int) -> None:
        """The partition moved to another process."""
        self._floors.pop(partition, None)

    def _add(self, partition: int, second: int, transit: float) -> None:
        floors = self._floors.setdefault(partition, deque())
        if floors and floors[-1][0] == second:
            floors[-1] = (second, min(floors[-1][1], transit))
        else:
            floors.append((second, transit))
        while floors and floors[0][0] <= second - self.window_s:
            floors.popleft()
