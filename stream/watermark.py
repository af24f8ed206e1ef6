"""Each input partition's event-time watermark: where its stream has got to, in a way one
record cannot move.

The feature store trims history relative to it (never past where the stream is) and flags
rows dated far from it (``fraudstream.features.store.FLAG_OUTLIER``). A partition's watermark is the
running maximum of the median event second of its last ``window`` records, once it has at
least ``least`` of them: a record dated years ahead is one vote among many, while a stream
that really moves on (a replay of a later period) carries the watermark with it after half
a window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from fraudstream.features.definitions import seconds


@dataclass
class Watermarks:
    """Watermarks of the partitions this process reads."""

    window: int = 64
    """Recent records per partition the median is taken over."""
    least: int = 8
    """Records a partition needs before it has a watermark."""
    _recent: dict[int, deque[int]] = field(default_factory=dict)
    _mark: dict[int, int] = field(default_factory=dict)

    def take(
        self, partitions: npt.NDArray[np.int64], event_time_ms: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """Per row, its partition's watermark second from the records before it (this
        batch's earlier rows included; NaN: none yet); the batch's records then count in."""
        out = np.full(partitions.shape[0], np.nan)
        secs = seconds(event_time_ms)
        for p in np.unique(partitions).tolist():
            rows = np.flatnonzero(partitions == p)
            recent = self._recent.setdefault(p, deque(maxlen=self.window))
            out[rows] = self._marks_before(p, recent, secs[rows])
            recent.extend(secs[rows].tolist())
        return out

    def _marks_before(self, p: int, recent: deque[int], secs: npt.NDArray[np.int64]) -> Any:
        """The watermark before each of ``secs`` (in order), and the partition's after."""
        prior = np.fromiter(recent, np.int64, len(recent))
        seq = np.concatenate([prior, secs])
        r, m = prior.size, secs.size
        medians = np.full(m, np.nan)
        for j in range(m):  # the first rows of a window still filling: few, at start only
            have = r + j
            if have >= self.window:
                break
            if have >= self.least:
                medians[j] = np.floor(np.median(seq[:have]))
        full = np.arange(m)[r + np.arange(m) >= self.window]
        if full.size:  # the window of records just before row j: seq[r + j - window : r + j]
            windows = sliding_window_view(seq, self.window)[r + full - self.window]
            medians[full] = np.floor(np.median(windows, axis=1))
        start = self._mark.get(p, -np.inf)
        marks = np.fmax.accumulate(np.concatenate([[start], medians]))[1:]
        marks[np.isinf(marks)] = np.nan
        last = np.floor(np.median(seq[-self.window :])) if seq.size >= self.least else np.nan
        if np.isfinite(last):
            self._mark[p] = int(max(start, last))
        return marks

    def mark(self, partition: int) -> int | None:
        """The partition's watermark second, if it has one."""
        return self._mark.get(partition)

    def forget(self, partition: int) -> None:
        """The partition moved to another process."""
        self._recent.pop(partition, None)
        self._mark.pop(partition, None)
