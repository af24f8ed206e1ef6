"""Run ``fraudstream`` in-process with the history commands registered, and read topics back."""

from __future__ import annotations

from typing import Any

import orjson

from fraudstream.stream import cli
from tests.serving import consume_all


def fraudstream(argv: list[str]) -> int:
    """``fraudstream`` run in-process (``fraudstream.stream.cli.main``), quiet logs."""
    return cli.main(["--plain-logs", "--log-level", "WARNING", *argv])


def read_back(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes, dict[str, Any]]]:
    """(Kafka timestamp ms, key, JSON value) of every message, in offset order; waits a
    second after ``expected`` arrived so that extra messages would show."""
    msgs = consume_all(bootstrap, topic, expected, timeout_s=60, settle_s=1.0)
    return [(m.timestamp()[1], m.key(), orjson.loads(m.value())) for m in msgs]
