"""Partition watermarks that one record cannot move."""

from __future__ import annotations

import numpy as np

from fraudstream.stream.watermark import Watermarks

T0 = 1_525_000_000_000


def _take(marks: Watermarks, part: int, ms: list[int]) -> list[float]:
    out = marks.take(np.full(len(ms), part, dtype=np.int64), np.asarray(ms, dtype=np.int64))
    return out.tolist()


def test_a_partition_needs_a_few_records_then_follows_its_median() -> None:
    marks = Watermarks(window=8, least=4)
    first = _take(marks, 0, [T0 + 1000 * i for i in range(3)])
    assert all(np.isnan(first))
    _take(marks, 0, [T0 + 3000])
    assert marks.mark(0) == T0 // 1000 + 1  # median of 0, 1, 2, 3 s: 1.5, rounded down


def test_one_record_dated_years_ahead_does_not_move_it_but_a_moved_stream_does() -> None:
    marks = Watermarks(window=8, least=4)
    _take(marks, 0, [T0 + 1000 * i for i in range(8)])
    before = marks.mark(0)
    got = _take(marks, 0, [T0 + 8 * 365 * 86_400_000])  # 2026 in a 2018 stream
    assert got == [before]  # judged against the watermark before it
    assert marks.mark(0) == before + 1  # one vote of eight: the median moved by a record
    later = T0 + 90 * 86_400_000
    _take(marks, 0, [later + 1000 * i for i in range(5)])  # the stream itself moves on
    assert marks.mark(0) >= later // 1000


def test_partitions_are_apart_and_forgotten_on_revoke() -> None:
    marks = Watermarks(window=4, least=1)
    parts = np.array([0, 1], dtype=np.int64)
    marks.take(parts, np.array([T0, T0 + 86_400_000], dtype=np.int64))
    assert marks.mark(0) == T0 // 1000 and marks.mark(1) == T0 // 1000 + 86_400
    marks.forget(1)
    assert marks.mark(1) is None


def test_rows_of_one_batch_are_judged_by_the_rows_before_them() -> None:
    """A backlog arrives in one batch: the record dated ahead inside it still meets a
    watermark (the median of the records before it), and moves it by one vote only."""
    marks = Watermarks(window=16, least=4)
    ms = [T0 + 1000 * i for i in range(40)]
    ms.insert(30, T0 + 8 * 365 * 86_400_000)
    got = _take(marks, 0, ms)
    assert all(np.isnan(got[:4])) and not np.isnan(got[4])
    assert got[30] <= (T0 + 30_000) // 1000  # the future record is judged against the past
    assert max(got[4:]) < (T0 + 41_000) // 1000  # and never became the watermark
    assert got[4:] == sorted(got[4:])  # monotone
