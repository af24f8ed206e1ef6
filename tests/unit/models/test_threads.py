from __future__ import annotations

import sys

from fraudstream.models.threads import ThreadPolicy, Timing, calibrate, policy_from


def test_all_cores_from_the_size_where_they_keep_winning() -> None:
    measured = [
        Timing(1, 0.1, 0.2),
        Timing(64, 0.3, 0.2),  # a lucky win that larger sizes contradict
        Timing(256, 0.5, 0.6),
        Timing(1024, 2.0, 1.0),
        Timing(4096, 8.0, 4.0),
    ]
    policy = policy_from(measured, cores=4)
    assert policy.multi_from_rows == 1024
    assert [policy.threads_for(n) for n in (1, 1023, 1024, 10**6)] == [1, 1, 4, 4]


def test_a_win_within_noise_keeps_one_thread() -> None:
    measured = [Timing(1, 1.0, 0.95), Timing(64, 2.0, 1.79), Timing(1024, 10.0, 5.0)]
    assert policy_from(measured, cores=2).multi_from_rows == 64


def test_never_winning_means_one_thread_always() -> None:
    policy = policy_from([Timing(1, 0.1, 0.2), Timing(4096, 1.0, 1.5)], cores=8)
    assert policy.multi_from_rows == sys.maxsize
    assert policy.threads_for(10**9) == 1


def test_calibrate_times_both_thread_counts_and_skips_on_one_core() -> None:
    calls: list[tuple[int, int]] = []

    def predict(batch: object, threads: int) -> object:
        calls.append((len(batch), threads))  # type: ignore[arg-type]
        return None

    policy = calibrate(predict, num_features=3, cores=2, sizes=(1, 8), budget_s=0.0)
    assert {(1, 1), (1, 2), (8, 1), (8, 2)} == set(calls)
    assert [t.rows for t in policy.measured] == [1, 8]
    assert calibrate(predict, 3, cores=1) == ThreadPolicy(cores=1, multi_from_rows=sys.maxsize)
