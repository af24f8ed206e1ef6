"""Per-batch-size thread count for CPU scoring, measured rather than guessed.

Small batches with many OpenMP threads spike latency (thread wake-up costs more than the
work), large ones gain from all cores. ``calibrate`` times one thread against all cores
at a few batch sizes; the policy uses all cores from the smallest measured size at which
they win at that size and every larger one.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PredictFn = Callable[[npt.NDArray[np.float32], int], object]
CALIBRATION_SIZES = (1, 64, 256, 1024, 4096)
MULTI_MARGIN = 0.1
"""All cores must be at least this much faster (relative) to be used for a batch size."""


@dataclass(frozen=True)
class Timing:
    """One calibration point: best-of seconds per batch with one thread and all cores."""

    rows: int
    """Batch size."""
    single_s: float
    """Seconds per batch with one thread."""
    multi_s: float
    """Seconds per batch with all cores."""


@dataclass(frozen=True)
class ThreadPolicy:
    """How many threads a batch of a given size gets."""

    cores: int
    """Threads used for large batches (usable CPU cores)."""
    multi_from_rows: int
    """Batches with at least this many rows use ``cores`` threads; smaller ones use one."""
    measured: tuple[Timing, ...] = ()
    """The measurements behind ``multi_from_rows`` (empty when set by hand)."""

    def threads_for(self, rows: int) -> int:
        """Thread count for a batch of ``rows`` rows."""
        return self.cores if rows >= self.multi_from_rows else 1


def usable_cores() -> int:
    """CPU cores this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def calibrate(
    predict: PredictFn,
    num_features: int,
    cores: int,
    sizes: Sequence[int] = CALIBRATION_SIZES,
    budget_s: float = 0.02,
) -> ThreadPolicy:
    """Time ``predict(batch, threads)`` with 1 and ``cores`` threads at each size."""
    if cores <= 1:
        return ThreadPolicy(cores=1, multi_from_rows=sys.maxsize)
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(max(sizes), num_features)).astype(np.float32)
    measured = tuple(
        Timing(
            rows=size,
            single_s=_best_of(predict, batch[:size], 1, budget_s),
            multi_s=_best_of(predict, batch[:size], cores, budget_s),
        )
        for size in sorted(sizes)
    )
    return policy_from(measured, cores)


def policy_from(measured: Sequence[Timing], cores: int) -> ThreadPolicy:
    """The policy implied by measurements: all cores from the size where they keep winning.

    "Winning" means at least ``MULTI_MARGIN`` faster: within noise, one thread is kept,
    since it cannot spike on OpenMP wake-ups.
    """
    start = sys.maxsize
    for timing in sorted(measured, key=lambda t: t.rows, reverse=True):
        if timing.multi_s > timing.single_s * (1 - MULTI_MARGIN):
            break
        start = timing.rows
    return ThreadPolicy(cores=cores, multi_from_rows=start, measured=tuple(measured))


def _best_of(
    predict: PredictFn, batch: npt.NDArray[np.float32], threads: int, budget_s: float
) -> float:
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    for attempt in range(1000):
        began = time.perf_counter()
        predict(batch, threads)
        best = min(best, time.perf_counter() - began)
        if attempt >= 2 and time.perf_counter() >= deadline:
            break
    return best
