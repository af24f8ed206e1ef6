"""Dead letters: the original key, value and headers unchanged, plus headers that say why.

A dead letter that does not fit the dead-letter topic's size limit is written cut down
(``fit``): its value, then its key, then its own headers are truncated until it fits, and
``fraudstream.truncated`` names what was cut, beside the original sizes and SHA-256 digests.
A write that fails anyway is retried in a smaller form, at most ``MAX_ATTEMPTS`` times in
all; then it is given up, counted and logged with its source offset (``DeadLetters``), so
that no message can stop serve.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaError

from fraudstream.features.exceptions import InvalidInput

logger = logging.getLogger(__name__)

Header = tuple[str, bytes]

MAX_ATTEMPTS = 3
"""Writes of one dead letter before it is given up: whole (or cut to the limit), cut to a
sixteenth of the limit, then its headers alone."""
RECORD_OVERHEAD = 512
"""Bytes kept free for the record batch's framing (61-byte batch header, varints)."""
HEADER_OVERHEAD = 10
"""Framing bytes per header (two varint lengths), rounded up."""


_REFUSALS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.POLICY_VIOLATION,
    }
)


def refused(err: KafkaError) -> bool:
    """True when the broker (or the producer) refused this message for what it is: a
    smaller form may pass. Other failures (timeouts, a purged queue after an aborted
    transaction, a broker down) are the batch's, handled like any output's."""
    return err.code() in _REFUSALS


@dataclass(frozen=True)
class Source:
    """Where a dead letter was read."""

    topic: str
    """Input topic."""
    partition: int
    """Its partition."""
    offset: int
    """Its offset."""

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class DeadLetter:
    """One message for the dead-letter topic."""

    key: bytes | None
    """The original key."""
    value: bytes | None
    """The original value."""
    headers: list[Header]
    """The original headers, then the error headers."""
    source: Source
    """Where the original was read."""
    own_headers: int = 0
    """How many of ``headers`` are the original's."""


def dead_letter(msg: Any, error: InvalidInput) -> DeadLetter:
    """The dead letter of a consumed message that failed to decode."""
    own = [(k, v if v is not None else b"") for k, v in (msg.headers() or [])]
    source = Source(msg.topic() or "", int(msg.partition()), int(msg.offset()))
    return DeadLetter(msg.key(), msg.value(), own + error_headers(error, source), source, len(own))


def error_headers(error: InvalidInput, source: Source) -> list[Header]:
    """The headers naming the error and the source."""
    return [
        ("fraudstream.error.class", type(error).__name__.encode()),
        ("fraudstream.error.code", error.code.encode()),
        ("fraudstream.error.field", error.field.encode()),
        ("fraudstream.error.reason", str(error).encode("utf-8", "replace")[:1024]),
        ("fraudstream.source.topic", source.topic.encode()),
        ("fraudstream.source.partition", str(source.partition).encode()),
        ("fraudstream.source.offset", str(source.offset).encode()),
    ]


def size_of(letter: DeadLetter) -> int:
    """What the letter weighs on the wire, framing included (an upper bound)."""
    headers = sum(len(k) + len(v) + HEADER_OVERHEAD for k, v in letter.headers)
    return len(letter.key or b"") + len(letter.value or b"") + headers + RECORD_OVERHEAD


def fit(letter: DeadLetter, limit: int) -> DeadLetter:
    """``letter`` unchanged when it weighs at most ``limit`` bytes; else cut down to fit (as
    far as the error headers allow) and marked."""
    if size_of(letter) <= limit:
        return letter
    marks = _marks(letter)
    own, ours = letter.headers[: letter.own_headers], letter.headers[letter.own_headers :]
    widest = [("fraudstream.truncated", b"value,key,headers")]
    fixed = size_of(replace(letter, key=b"", value=b"", headers=ours + marks + widest))
    own_size = sum(len(k) + len(v) + HEADER_OVERHEAD for k, v in own)
    cut: list[str] = []
    if fixed + own_size > limit and own:
        own, own_size = [], 0
    room = max(limit - fixed - own_size, 0)
    key, value = letter.key, letter.value
    if value is not None and len(value) > room - min(len(key or b""), room // 2):
        value = value[: max(room - min(len(key or b""), room // 2), 0)]
        cut.append("value")
    room -= len(value or b"")
    if key is not None and len(key) > room:
        key = key[: max(room, 0)]
        cut.append("key")
    if len(own) < letter.own_headers:
        cut.append("headers")
    headers = [*own, *ours, *marks, ("fraudstream.truncated", ",".join(cut).encode())]
    return DeadLetter(key, value, headers, letter.source, len(own))


def _marks(letter: DeadLetter) -> list[Header]:
    own = letter.headers[: letter.own_headers]
    key, value = letter.key or b"", letter.value or b""
    return [
        ("fraudstream.original.value.size", str(len(value)).encode()),
        ("fraudstream.original.value.sha256", hashlib.sha256(value).hexdigest().encode()),
        ("fraudstream.original.key.size", str(len(key)).encode()),
        ("fraudstream.original.key.sha256", hashlib.sha256(key).hexdigest().encode()),
        ("fraudstream.original.headers", str(len(own)).encode()),
    ]


@dataclass
class DeadLetters:
    """The dead-letter topic, its size limit, and the write attempts of each dead letter."""

    topic: str
    """Dead-letter topic."""
    limit: int
    """Largest message it accepts (its ``max.message.bytes``)."""
    on_lost: Callable[[DeadLetter, str], None] = lambda _letter, _why: None
    """Called once for a dead letter given up."""
    on_truncated: Callable[[DeadLetter], None] = lambda _letter: None
    """Called for each dead letter written cut down."""
    _attempts: dict[Source, int] = field(default_factory=dict)

    def form(self, letter: DeadLetter) -> DeadLetter | None:
        """What to write for ``letter`` now, after its failed attempts; None: given up."""
        attempts = self._attempts.get(letter.source, 0)
        if attempts >= MAX_ATTEMPTS:
            return None
        limit = self.limit if attempts == 0 else max(self.limit // 16, RECORD_OVERHEAD)
        out = fit(letter, limit)
        if attempts >= 2:
            out = fit(letter, 0)  # the error headers (and the marks) alone
        if out is not letter:
            self.on_truncated(out)
        return out

    def failed(self, letter: DeadLetter, why: str) -> bool:
        """Record a failed write; True while another attempt is allowed."""
        attempts = self._attempts.get(letter.source, 0) + 1
        self._attempts[letter.source] = attempts
        if attempts < MAX_ATTEMPTS:
            logger.warning(
                "dead letter of %s not written (%s); attempt %d of %d next",
                letter.source,
                why,
                attempts + 1,
                MAX_ATTEMPTS,
            )
            return True
        logger.error(
            "dead letter of %s given up after %d failed writes (%s); its offset is committed "
            "without it",
            letter.source,
            attempts,
            why,
        )
        self.on_lost(letter, why)
        return False

    def written(self, letter: DeadLetter) -> None:
        """The broker acknowledged ``letter``: forget its attempts."""
        if self._attempts:
            self._attempts.pop(letter.source, None)
