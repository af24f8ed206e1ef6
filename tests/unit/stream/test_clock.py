"""Where a budget starts: Kafka timestamps corrected for producers' clocks."""

from __future__ import annotations

import numpy as np

from fraudstream.stream.clock import SkewTracker

NOW = 1_800_000_000_000


def _fresh(
    tracker: SkewTracker, partition: int, skew_ms: int, transit_ms: int, n: int = 10
) -> None:
    """``n`` records produced ``transit_ms`` before they are fetched at NOW, stamped by a
    clock ``skew_ms`` ahead, at the end of their partition."""
    offsets = np.arange(1000, 1000 + n, dtype=np.int64)
    fetched = np.full(n, NOW, dtype=np.int64)
    stamped = fetched - transit_ms + skew_ms
    parts = np.full(n, partition, dtype=np.int64)
    tracker.observe(parts, offsets, stamped, fetched, {partition: 1000 + n})


def _latency(tracker: SkewTracker, partition: int, skew_ms: int, true_ms: int) -> int:
    stamped = np.array([NOW - true_ms + skew_ms], dtype=np.int64)
    start = tracker.starts(np.array([partition]), stamped, np.array([NOW], dtype=np.int64))
    return int(NOW - start[0])


def test_synchronised_clocks_are_left_alone() -> None:
    tracker = SkewTracker(tolerance_ms=20)
    _fresh(tracker, 0, skew_ms=0, transit_ms=3)
    assert tracker.correction_ms(0) == 0
    assert _latency(tracker, 0, 0, true_ms=40) == 40


def test_a_clock_ahead_never_gives_negative_latency_nor_hides_lateness() -> None:
    tracker = SkewTracker()
    _fresh(tracker, 0, skew_ms=2000, transit_ms=3)
    assert tracker.correction_ms(0) == -1997
    # a record that waited 1,030 ms (serve frozen): late, and shown late
    assert _latency(tracker, 0, 2000, true_ms=1030) == 1027
    assert _latency(tracker, 0, 2000, true_ms=5) == 2


def test_a_clock_behind_is_corrected_down_to_the_tolerance() -> None:
    tracker = SkewTracker(tolerance_ms=20)
    _fresh(tracker, 1, skew_ms=-100, transit_ms=3)
    assert tracker.correction_ms(1) == 83
    assert _latency(tracker, 1, -100, true_ms=8) == 25  # not 108: on time stays on time
    assert _latency(tracker, 1, -100, true_ms=300) == 317  # real lateness still shows


def test_a_backlog_is_not_mistaken_for_a_clock_behind() -> None:
    tracker = SkewTracker()
    offsets = np.arange(0, 500, dtype=np.int64)
    fetched = np.full(500, NOW, dtype=np.int64)
    stamped = NOW - 60_000 + offsets  # produced a minute ago, read now
    tracker.observe(np.zeros(500, dtype=np.int64), offsets, stamped, fetched, {0: 100_000})
    assert tracker.correction_ms(0) == 0
    assert _latency(tracker, 0, 0, true_ms=60_000) == 60_000


def test_without_a_fresh_sample_or_end_offset_timestamps_stand() -> None:
    tracker = SkewTracker()
    parts = np.array([3, 3], dtype=np.int64)
    tracker.observe(parts, np.array([5, 6]), np.array([NOW + 9000] * 2), np.array([NOW] * 2), {})
    assert tracker.corrections() == {}
    start = tracker.starts(parts, np.array([NOW + 9000] * 2), np.array([NOW] * 2))
    assert start.tolist() == [NOW, NOW]  # still never after arrival


def test_samples_age_out_of_the_window() -> None:
    tracker = SkewTracker(window_s=30)
    _fresh(tracker, 0, skew_ms=5000, transit_ms=3)
    later = np.array([NOW + 40_000] * 3, dtype=np.int64)
    parts = np.zeros(3, dtype=np.int64)
    tracker.observe(parts, np.array([7, 8, 9]), later - 3, later, {0: 10})  # clock fixed
    assert tracker.correction_ms(0) == 0
    tracker.forget(0)
    assert tracker.corrections() == {}
