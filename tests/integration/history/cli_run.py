"""Run ``fraudstream`` in-process with the history commands registered, and read topics back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import stream.cli
from tests.serving import consume_all


def fraudstream(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``stream.cli.main`` with ``stream.history.cli`` registered (until the CLI lists it)."""
    modules = stream.cli.COMMAND_MODULES
    if "stream.history.cli" not in modules:
        monkeypatch.setattr(stream.cli, "COMMAND_MODULES", (*modules, "stream.history.cli"))
    return stream.cli.main(["--plain-logs", "--log-level", "WARNING", *argv])


def read_back(bootstrap: str, topic: str, expected: int) -> list[tuple[int, bytes, dict[str, Any]]]:
    """(Kafka timestamp ms, key, JSON value) of every message, in offset order; waits a
    second after ``expected`` arrived so that extra messages would show."""
    msgs = consume_all(bootstrap, topic, expected, timeout_s=60, settle_s=1.0)
    return [(m.timestamp()[1], m.key(), orjson.loads(m.value())) for m in msgs]
