"""The loop's heartbeat behind /healthz."""

from __future__ import annotations

from fraudstream.stream.liveness import Liveness


def test_alive_until_the_bound_passes_without_a_beat_and_the_step_is_named() -> None:
    now = [100.0]
    liveness = Liveness(bound_s=60, clock=lambda: now[0])
    assert liveness.check() == (True, "starting")
    liveness.beat("committing")
    now[0] += 59
    assert liveness.check() == (True, "ok")
    now[0] += 2
    alive, why = liveness.check()
    assert not alive
    assert why == "no progress for 61 s (bound 60 s), last step: committing"
    liveness.beat("consuming")
    assert liveness.check()[0]
