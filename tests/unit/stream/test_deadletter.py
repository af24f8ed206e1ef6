"""Dead letters cut down to the dead-letter topic's limit, and the bounded write attempts."""

from __future__ import annotations

import hashlib

from fraudstream.features.exceptions import InvalidTransaction
from fraudstream.stream.deadletter import (
    MAX_ATTEMPTS,
    DeadLetter,
    DeadLetters,
    Source,
    error_headers,
    fit,
    size_of,
)

SOURCE = Source("transactions", 3, 41)


def _letter(key: bytes | None, value: bytes | None, own: list[tuple[str, bytes]]) -> DeadLetter:
    error = InvalidTransaction("too_large", "", "payload too large")
    return DeadLetter(key, value, own + error_headers(error, SOURCE), SOURCE, len(own))


def _headers(letter: DeadLetter) -> dict[str, bytes]:
    return dict(letter.headers)


def test_a_letter_that_fits_is_left_whole() -> None:
    letter = _letter(b"k", b"x" * 1000, [("trace", b"1")])
    assert fit(letter, size_of(letter)) is letter


def test_a_large_value_is_cut_to_the_limit_and_marked_with_its_size_and_digest() -> None:
    value = bytes(range(256)) * 4000  # 1,024,000 bytes
    letter = _letter(b"key-1", value, [("trace", b"abc")])
    out = fit(letter, 100_000)
    assert size_of(out) <= 100_000
    h = _headers(out)
    assert h["fraudstream.truncated"] == b"value"
    assert h["fraudstream.original.value.size"] == b"1024000"
    assert h["fraudstream.original.value.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert out.key == b"key-1"
    assert value.startswith(out.value or b"") and len(out.value or b"") > 90_000
    assert h["trace"] == b"abc" and h["fraudstream.error.code"] == b"too_large"
    assert h["fraudstream.source.offset"] == b"41"


def test_a_large_key_and_large_headers_are_cut_too() -> None:
    key = b"k" * 500_000
    own = [(f"h{i}", b"v" * 1000) for i in range(200)]
    letter = _letter(key, b"not json", own)
    out = fit(letter, 50_000)
    assert size_of(out) <= 50_000
    h = _headers(out)
    assert set(h["fraudstream.truncated"].split(b",")) == {b"key", b"headers"}
    assert h["fraudstream.original.key.size"] == b"500000"
    assert h["fraudstream.original.headers"] == b"200"
    assert out.value == b"not json"
    assert "h0" not in h and out.own_headers == 0


def test_a_zero_limit_keeps_only_the_error_headers_and_the_marks() -> None:
    out = fit(_letter(b"k" * 10, b"v" * 10, [("a", b"b")]), 0)
    assert out.key == b"" and out.value == b""
    assert _headers(out)["fraudstream.truncated"] == b"value,key,headers"


def test_writes_get_smaller_then_the_letter_is_given_up_once() -> None:
    lost: list[str] = []
    letters = DeadLetters("dlq", 1_000_000, on_lost=lambda _l, why: lost.append(why))
    letter = _letter(b"k", b"v" * 200_000, [])
    forms = []
    for attempt in range(MAX_ATTEMPTS):
        form = letters.form(letter)
        assert form is not None
        forms.append(size_of(form))
        assert letters.failed(letter, f"refused {attempt}") is (attempt < MAX_ATTEMPTS - 1)
    assert forms[0] > forms[1] > forms[2]
    assert forms[1] <= 1_000_000 // 16
    assert letters.form(letter) is None  # given up: a redone batch skips it
    assert lost == [f"refused {MAX_ATTEMPTS - 1}"]


def test_a_written_letter_forgets_its_attempts() -> None:
    letters = DeadLetters("dlq", 1_000_000)
    letter = _letter(b"k", b"v", [])
    letters.failed(letter, "timeout")
    letters.written(letter)
    assert letters.form(letter) is letter
