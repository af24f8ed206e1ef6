"""Calls that may never return, waited for under a bound.

librdkafka's transactional calls can block forever whatever timeout they are given
(librdkafka#5456, #5511): ``ExactlyOnce`` runs them through a ``BoundedCaller`` and treats
``Stalled`` as a stuck producer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout


class Stalled(Exception):  # noqa: N818 - a condition its caller handles, not a failure
    """A call did not return within its bound."""

    def __init__(self, what: str, limit_s: float) -> None:
        self.text = f"{what} did not return within {limit_s:g} s"
        super().__init__(self.text)


class BoundedCaller:
    """Runs calls one at a time on a daemon thread, each waited for at most ``limit_s``.

    A daemon thread, not an executor: one blocked forever must not hold up the process's
    exit (executors join their threads at interpreter shutdown).
    """

    def __init__(self, name: str = "kafka-txn") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def run(self, call: Callable[[], object], limit_s: float, what: str) -> object:
        return self.wait(self.submit(call), limit_s, what)

    def submit(self, call: Callable[[], object]) -> Future[object]:
        """Queue ``call``; its result (or error) comes back through ``wait``."""
        future: Future[object] = Future()
        self._jobs.put((call, future))
        return future

    @staticmethod
    def wait(future: Future[object], limit_s: float, what: str) -> object:
        """The result of a submitted call, waited for at most ``limit_s`` more."""
        try:
            return future.result(timeout=limit_s)
        except FutureTimeout:
            raise Stalled(what, limit_s) from None

    def stop(self) -> None:
        self._jobs.put(None)

    def abandon(self) -> None:
        """Leave the thread to its blocked call; it exits if the call ever returns."""
        self.stop()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, future = job
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
