"""Dead letters of the label pipeline: the original key, value and headers unchanged, plus
headers that say why (the same header names as ``transactions.dlq``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fraudstream.features.exceptions import InvalidInput

Header = tuple[str, bytes]
REASON_LIMIT = 1024
"""Longest reason header, in bytes (a reason may quote the payload)."""


@dataclass(frozen=True)
class Source:
    """Where a message was read."""

    topic: str
    """Source topic."""
    partition: int
    """Source partition."""
    offset: int
    """Source offset."""


def own_headers(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None,
) -> list[Header]:
    """A message's headers as a list, in order (faust hands a list or a mapping)."""
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), v if v is not None else b"") for k, v in items]


def dead_letter_headers(own: list[Header], error: InvalidInput, source: Source) -> list[Header]:
    """The message's own headers followed by the error class, code, field, reason and source."""
    return [
        *own,
        ("fraudstream.error.class", type(error).__name__.encode()),
        ("fraudstream.error.code", error.code.encode()),
        ("fraudstream.error.field", error.field.encode()),
        ("fraudstream.error.reason", str(error).encode("utf-8", "replace")[:REASON_LIMIT]),
        ("fraudstream.source.topic", source.topic.encode()),
        ("fraudstream.source.partition", str(source.partition).encode()),
        ("fraudstream.source.offset", str(source.offset).encode()),
    ]
