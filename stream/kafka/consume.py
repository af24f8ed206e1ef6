"""Taking records from a consumer without waiting for a full batch."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer


def take_queued(consumer: Consumer, room: int, idle_wait_s: float) -> list[Any]:
    """Up to ``room`` messages: what the consumer has queued, at once; when nothing is,
    block up to ``idle_wait_s`` (0: not at all) for the first one only, then take what
    came with it. ``Consumer.consume(n, timeout)`` would wait for n messages or the
    timeout: never wait for a full batch."""
    msgs = consumer.consume(room, timeout=0)
    if msgs or idle_wait_s <= 0:
        return msgs
    first = consumer.poll(idle_wait_s)
    return [first, *consumer.consume(room - 1, timeout=0)] if first else []
