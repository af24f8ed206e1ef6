"""BoundedCaller: results and errors come back; a call past its bound raises Stalled."""

from __future__ import annotations

import threading
import time

import pytest

from fraudstream.stream.bounded_call import BoundedCaller, Stalled


def test_results_and_errors_come_back_in_order() -> None:
    caller = BoundedCaller()
    assert caller.run(lambda: 41 + 1, 1.0, "add") == 42
    with pytest.raises(ZeroDivisionError):
        caller.run(lambda: 1 / 0, 1.0, "divide")
    assert caller.run(lambda: "after an error", 1.0, "again") == "after an error"
    caller.stop()


def test_a_call_past_its_bound_stalls_and_a_fresh_caller_goes_on() -> None:
    release = threading.Event()
    caller = BoundedCaller()
    started = time.monotonic()
    with pytest.raises(Stalled, match="send_offsets did not return within 0.2 s"):
        caller.run(release.wait, 0.2, "send_offsets")
    assert 0.2 <= time.monotonic() - started < 2.0
    caller.abandon()
    fresh = BoundedCaller()
    assert fresh.run(lambda: "ok", 1.0, "next") == "ok"  # not queued behind the stuck call
    release.set()
    fresh.stop()
