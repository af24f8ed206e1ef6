"""Corpora of input a stream will eventually carry: malformed transaction payloads
(hand-written plus hypothesis-generated), to be dead-lettered; and valid but unusual ones
(reused ids, dates far from the stream, the largest valid record), to be decided with the
feature store's flags."""

from __future__ import annotations

import time

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

GOOD = {
    "transaction_id": "p",
    "event_time": 1_525_000_000_000,
    "customer_id": "c",
    "terminal_id": "t",
    "amount": 10.0,
}


def _with(**changes: object) -> bytes:
    doc: dict[str, object] = dict(GOOD)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key)
        else:
            doc[key] = value
    return orjson.dumps(doc)


_DROP = object()


def hand_written() -> list[bytes]:
    good = orjson.dumps(GOOD)
    nested: bytes = b"[" * 5000 + b"]" * 5000
    return [
        b"not json",
        b"{",
        good[:-1],
        good[: len(good) // 2],
        b"\x00\x01\x02",
        b"\xff\xfe\xfd",
        b'"just a string"',
        b"42",
        b"null",
        b"true",
        b"[]",
        b"[1, 2, 3]",
        nested,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"{" + b'"k": 1,' * 10 + b"}",
        b"x" * 70_000,
        _with(metadata="y" * 70_000),
        b'{"transaction_id": "p", "event_time": 1525000000000, "customer_id": "c", '
        b'"terminal_id": "t", "amount": NaN}',
        b'{"transaction_id": "p", "event_time": 1525000000000, "customer_id": "c", '
        b'"terminal_id": "t", "amount": Infinity}',
        b'{"transaction_id": "p", "event_time": 1525000000000, "customer_id": "c", '
        b'"terminal_id": "t", "amount": -Infinity}',
        _with(amount=-1),
        _with(amount=-0.01),
        _with(amount=1e12),
        _with(amount=1e308 * 10),
        _with(amount="12"),
        _with(amount=None),
        _with(amount=True),
        _with(amount=[1]),
        _with(amount={"v": 1}),
        _with(amount=_DROP),
        _with(transaction_id=_DROP),
        _with(customer_id=_DROP),
        _with(terminal_id=_DROP),
        _with(event_time=_DROP),
        _with(transaction_id=""),
        _with(transaction_id="t" * 200),
        _with(transaction_id=5.5),
        _with(transaction_id=None),
        _with(customer_id=None),
        _with(customer_id=[1]),
        _with(terminal_id={"x": 1}),
        _with(customer_id=1.5),
        _with(event_time="yesterday"),
        _with(event_time="2018-13-45T99:00:00Z"),
        _with(event_time=-5),
        _with(event_time=946_684_799_999),
        _with(event_time=32_503_680_000_000),
        _with(event_time="1999-12-31T23:59:59Z"),
        _with(event_time="9999-01-01T00:00:00Z"),
        _with(event_time=True),
        _with(event_time=1.5e30),
        _with(event_time=None),
        b'{"transaction_id": "\\ud800"}',
        b'{"transaction_id": "\xed\xa0\x80"}',
        b"\xef\xbb\xbf" + b"{}",
        b"{}",
    ]


def generated(n: int = 30) -> list[bytes]:
    """Random dictionaries and byte strings from hypothesis (none is a valid transaction:
    each lacks a required field)."""
    seen: list[bytes] = []
    keys = st.sampled_from(["transaction_id", "event_time", "customer_id", "amount", "x"])
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
    )
    docs = st.dictionaries(keys, values, max_size=5).map(orjson.dumps)

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.one_of(st.binary(max_size=64), docs))
    def collect(payload: bytes) -> None:
        seen.append(payload)

    collect()
    return seen


def poison_corpus() -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) pairs: every one must end up in the dead-letter topic, byte-identical."""
    values = hand_written() + generated()
    pairs: list[tuple[bytes | None, bytes | None]] = [
        (f"p{i}".encode(), v) for i, v in enumerate(values)
    ]
    pairs += [(None, b""), (b"", b"{}"), (b"k", None)]
    return pairs


def _tx(**changes: object) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def decided_corpus(now_ms: int | None = None) -> list[tuple[bytes, bytes, int]]:
    """(key, value, store flags of its decision) of valid transactions a stream will
    eventually carry, in this order after records of ``GOOD``'s time (2018): each must be
    decided, never dead-lettered. The flags are ``fraudstream.features.store``'s, for a reader that
    passes the stream's watermark: a reused id with other content is a conflict (the
    amount, then the customer), the first copy again is a redelivery, a record dated today
    (``now_ms``) and one 60 days behind are outliers, the largest valid record is plain."""
    from fraudstream.features.store import FLAG_CONFLICT, FLAG_OUTLIER

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    t = int(GOOD["event_time"])  # type: ignore[call-overload]
    day = 86_400_000
    first = _tx(transaction_id="reused", amount=10.0)
    return [
        (b"c", first, 0),
        (b"c", _tx(transaction_id="reused", amount=5000.0), FLAG_CONFLICT),
        (b"other", _tx(transaction_id="reused", customer_id="other", amount=10.0), FLAG_CONFLICT),
        (b"c", first, 0),
        (b"c", _tx(transaction_id="today", event_time=now_ms - 3_600_000), FLAG_OUTLIER),
        (b"c", _tx(transaction_id="behind", event_time=t - 60 * day), FLAG_OUTLIER),
        (
            b"k" * 128,
            _tx(
                transaction_id="i" * 128,
                customer_id="c" * 128,
                terminal_id="t" * 128,
                metadata={"note": "m" * 64_000},
            ),
            0,
        ),
    ]
