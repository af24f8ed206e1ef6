"""A produce blocked on a full local queue gives up once the process is stopping."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fraudstream.stream.delivery import BatchAborted, _produce


class FullQueue:
    """A producer whose local queue never has room."""

    def __init__(self, stopping: threading.Event, stop_after: int) -> None:
        self.polls = 0
        self.stopping, self.stop_after = stopping, stop_after

    def produce(self, topic: str, **kwargs: Any) -> None:
        raise BufferError("Local: Queue full")

    def poll(self, timeout: float) -> int:
        self.polls += 1
        if self.polls == self.stop_after:
            self.stopping.set()  # SIGTERM arrives while the queue is full
        return 0


def test_a_full_queue_is_waited_on_until_the_stop_flag() -> None:
    stopping = threading.Event()
    producer = FullQueue(stopping, stop_after=3)
    with pytest.raises(BatchAborted, match="stopping while the producer's queue is full"):
        _produce(producer, "t", b"k", b"v", None, 0, None, stopping)  # type: ignore[arg-type]
    assert producer.polls == 3
