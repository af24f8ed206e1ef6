"""Models in service: the champion now, hot swaps between batches, and the shadow challenger.

A new version named by the registry's ``CURRENT`` is loaded on a background thread (so a
slow load never delays a decision) and swapped in by the serve loop between batches. A
failed load keeps the old model serving and counts an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fraudstream.features.exceptions import FraudstreamError
from fraudstream.stream.pipeline import ScorerLike

logger = logging.getLogger(__name__)

Loader = Callable[[str | None], ScorerLike]


@dataclass
class ModelHolder:
    """Holds the serving model and swaps in the version ``CURRENT`` names."""

    load: Loader
    """Loads a version (None = CURRENT); raises a FraudstreamError on a bad model."""
    current_version: Callable[[], str | None]
    """Reads the version CURRENT names now."""
    poll_s: float = 2.0
    """Seconds between checks of CURRENT."""
    on_swap: Callable[[ScorerLike], None] = lambda _s: None
    """Called after a swap (metrics)."""
    on_error: Callable[[str, Exception], None] = lambda _v, _e: None
    """Called after a failed load (metrics)."""
    clock: Callable[[], float] = time.monotonic
    """Monotonic clock."""
    model: ScorerLike | None = None
    _next_check: float = 0.0
    _loading: str | None = None
    _ready: ScorerLike | None = None
    _failed: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ScorerLike | None:
        """Load the promoted model at start; a bad one is an error (the process must exit)."""
        if self.current_version() is None:
            logger.warning("no promoted model in the registry: deciding by rules until one is")
            return None
        self.model = self.load(None)
        self.on_swap(self.model)
        self._next_check = self.clock() + self.poll_s
        return self.model

    def get(self) -> ScorerLike | None:
        return self.model

    def poll(self) -> bool:
        """Between batches: swap in a loaded model, or start loading a newly promoted one."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            old = self.model.version if self.model else None
            self.model = ready
            self.on_swap(ready)
            logger.info("model swapped", extra={"old_version": old, "new_version": ready.version})
            return True
        now = self.clock()
        if now < self._next_check or self._loading is not None:
            return False
        self._next_check = now + self.poll_s
        try:
            wanted = self.current_version()
        except (OSError, FraudstreamError) as exc:
            logger.warning("cannot read the registry's CURRENT pointer: %s", exc)
            return False
        serving = self.model.version if self.model else None
        if wanted is None or wanted == serving or wanted in self._failed:
            return False
        self._loading = wanted
        threading.Thread(target=self._load, args=(wanted,), daemon=True, name="model-load").start()
        return False

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Block until no load is in flight (tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._loading is not None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _load(self, version: str) -> None:
        try:
            scorer = self.load(version)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model serving
            self._failed.add(version)
            logger.error("loading model %s failed; the old model keeps serving: %s", version, exc)
            self.on_error(version, exc)
        else:
            with self._lock:
                self._ready = scorer
        finally:
            self._loading = None
