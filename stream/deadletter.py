"""Dead letters: the original key, value and headers unchanged, plus headers that say why."""

from __future__ import annotations

from typing import Any

from features.exceptions import InvalidInput

Header = tuple[str, bytes]


def dead_letter_headers(msg: Any, error: InvalidInput) -> list[Header]:
    """The message's own headers followed by the error class, code, reason and source."""
    own = [(k, v if v is not None else b"") for k, v in (msg.headers() or [])]
    return own + [
        ("fraudstream.error.class", type(error).__name__.encode()),
        ("fraudstream.error.code", error.code.encode()),
        ("fraudstream.error.field", error.field.encode()),
        ("fraudstream.error.reason", str(error).encode("utf-8", "replace")[:1024]),
        ("fraudstream.source.topic", (msg.topic() or "").encode()),
        ("fraudstream.source.partition", str(msg.partition()).encode()),
        ("fraudstream.source.offset", str(msg.offset()).encode()),
    ]
