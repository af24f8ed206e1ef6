"""Whether serve's loop makes progress: a heartbeat the loop updates with what it is doing,
and the check behind ``/healthz`` (a liveness probe restarts a process stuck past the
bound, e.g. in a transactional call that never returns or a produce on a full queue)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Liveness:
    """The loop's last sign of progress."""

    bound_s: float = 60.0
    """Longer than this without progress, the loop counts as stuck."""
    clock: Callable[[], float] = time.monotonic
    """Monotonic clock."""
    _at: float = field(default=-1.0)
    _doing: str = "starting"

    def beat(self, doing: str) -> None:
        """Progress, and what the loop does next."""
        self._at = self.clock()
        self._doing = doing

    def check(self) -> tuple[bool, str]:
        """(alive, why): alive until the loop has gone ``bound_s`` without a beat."""
        if self._at < 0:
            return True, "starting"
        quiet = self.clock() - self._at
        if quiet <= self.bound_s:
            return True, "ok"
        return False, (
            f"no progress for {quiet:.0f} s (bound {self.bound_s:g} s), last step: {self._doing}"
        )
