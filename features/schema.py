"""The Transaction and Label contracts: typed records, and bytes <-> records.

``decode_transactions`` turns a batch of Kafka values into a columnar ``TransactionBatch`` of
the valid ones plus one ``InvalidTransaction`` per bad one; it never raises for bad data.
JSON is parsed with orjson, which rejects NaN/Infinity, invalid UTF-8 and nesting deeper
than 1024; with duplicate keys the last one wins (the JSON Schema check sees the same).
Unknown fields are accepted and ignored. The published JSON Schemas live in
``features/schemas/``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import orjson

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import MAX_AMOUNT, MIN_EVENT_TIME_MS
from fraudstream.features.exceptions import InvalidLabel, InvalidTransaction
from fraudstream.features.validation import (
    MISSING,
    Problem,
    check_amounts,
    check_flags,
    check_ids,
    check_optional_object,
    check_optional_text,
    check_times,
)

__all__ = [
    "DecodeLimits",
    "DecodeResult",
    "Label",
    "Transaction",
    "TransactionBatch",
    "decode_label",
    "decode_transaction",
    "decode_transactions",
    "encode_label",
    "encode_transaction",
]

OPTIONAL_TEXT = ("currency", "channel", "mcc", "country")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Transaction:
    """One payment, as on the ``transactions`` topic."""

    transaction_id: str
    """Unique id (1-128 characters); the idempotency key everywhere."""
    event_time_ms: int
    """When it happened, epoch milliseconds UTC."""
    customer_id: str
    """Card holder; also the Kafka key."""
    terminal_id: str
    """Where it was paid."""
    amount: float
    """Finite, >= 0."""
    currency: str | None = None
    """Optional ISO 4217 code; not used by the features."""
    channel: str | None = None
    """Optional (e.g. pos, ecom); not used by the features."""
    mcc: str | None = None
    """Optional merchant category code, as text."""
    country: str | None = None
    """Optional country code."""
    metadata: dict[str, Any] | None = None
    """Optional free-form JSON object, carried along untouched."""


@dataclass(frozen=True, slots=True)
class Label:
    """A fraud verdict on a past transaction, as on the ``fraud.labels`` topic."""

    transaction_id: str
    """The labelled transaction."""
    customer_id: str
    """Its customer."""
    terminal_id: str
    """Its terminal: the label counts in this terminal's fraud windows."""
    event_time_ms: int
    """The transaction's event time, epoch ms: where in the windows the label counts."""
    label_time_ms: int
    """When the verdict was known, epoch ms."""
    is_fraud: bool
    """The verdict."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds a message must respect to be decoded."""

    max_bytes: int = 65_536
    """Largest accepted payload (code ``too_large`` above)."""
    max_amount: float = MAX_AMOUNT
    """Largest accepted amount."""
    min_event_time_ms: int = MIN_EVENT_TIME_MS
    """Earliest accepted event time (2000-01-01)."""
    max_future_ms: int = 86_400_000
    """How far past the decoder's clock an event time may be."""


@dataclass(frozen=True)
class DecodeResult:
    """The outcome of decoding a batch: valid records and failures side by side."""

    batch: TransactionBatch
    """The valid transactions, in input order."""
    ok_index: list[int]
    """Position in the input of each row of ``batch``."""
    errors: list[tuple[int, InvalidTransaction]]
    """(position in the input, error) for every invalid message, by position."""
    extras: dict[str, list[Any]] = field(default_factory=dict)
    """Optional fields per row of ``batch``: currency, channel, mcc, country, metadata."""

    @cached_property
    def transactions(self) -> list[Transaction]:
        """The valid ones as records (built on first use)."""
        b, x = self.batch, self.extras
        none: list[Any] = [None] * len(b)
        return [
            Transaction(
                b.transaction_id[i],
                int(b.event_time_ms[i]),
                b.customer_id[i],
                b.terminal_id[i],
                float(b.amount[i]),
                *(x.get(name, none)[i] for name in (*OPTIONAL_TEXT, "metadata")),
            )
            for i in range(len(b))
        ]


def decode_transactions(
    values: Sequence[bytes | None], limits: DecodeLimits | None = None, now_ms: int | None = None
) -> DecodeResult:
    """Decode and validate a batch of message values; never raises for bad input."""
    limits = limits or DecodeLimits()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    docs, positions, errors = _parse(values, limits.max_bytes)
    columns = {name: [d.get(name, MISSING) for d in docs] for name in _TX_FIELDS}
    problems: dict[int, Problem] = {}
    tx_id = _keep(problems, check_ids(columns["transaction_id"], "transaction_id"))
    ms = _keep(
        problems,
        check_times(
            columns["event_time"],
            "event_time",
            limits.min_event_time_ms,
            now + limits.max_future_ms,
        ),
    )
    customer = _keep(problems, check_ids(columns["customer_id"], "customer_id"))
    terminal = _keep(problems, check_ids(columns["terminal_id"], "terminal_id"))
    amount = _keep(problems, check_amounts(columns["amount"], limits.max_amount))
    extras: dict[str, list[Any]] = {
        name: _keep(problems, check_optional_text(columns[name], name, allow_int=name == "mcc"))
        for name in OPTIONAL_TEXT
    }
    extras["metadata"] = _keep(problems, check_optional_object(columns["metadata"], "metadata"))
    ok = [k for k in range(len(docs)) if k not in problems]
    errors += [(positions[k], InvalidTransaction(c, m, f)) for k, (_p, c, f, m) in problems.items()]
    errors.sort(key=lambda e: e[0])
    batch = TransactionBatch.from_columns(tx_id, customer, terminal, ms, amount).take(ok)
    picked = {name: [col[k] for k in ok] for name, col in extras.items()}
    return DecodeResult(batch, [positions[k] for k in ok], errors, picked)


def decode_transaction(value: bytes, limits: DecodeLimits | None = None) -> Transaction:
    """One message to a record; raises ``InvalidTransaction``."""
    result = decode_transactions([value], limits)
    if result.errors:
        raise result.errors[0][1]
    return result.transactions[0]


def encode_transaction(tx: Transaction) -> bytes:
    """The JSON bytes of a transaction (``event_time`` in epoch ms; nulls left out)."""
    doc: dict[str, Any] = {
        "transaction_id": tx.transaction_id,
        "event_time": tx.event_time_ms,
        "customer_id": tx.customer_id,
        "terminal_id": tx.terminal_id,
        "amount": tx.amount,
    }
    for name in (*OPTIONAL_TEXT, "metadata"):
        value = getattr(tx, name)
        if value is not None:
            doc[name] = value
    return orjson.dumps(doc)


def decode_label(value: bytes | None, limits: DecodeLimits | None = None) -> Label:
    """One ``fraud.labels`` message to a record; raises ``InvalidLabel``."""
    limits = limits or DecodeLimits()
    docs, _positions, errors = _parse([value], limits.max_bytes)
    if errors:
        err = errors[0][1]
        raise InvalidLabel(err.code, err.reason, err.field)
    doc = docs[0]
    col = {name: [doc.get(name, MISSING)] for name in _LABEL_FIELDS}
    problems: dict[int, Problem] = {}
    ids = [_keep(problems, check_ids(col[n], n))[0] for n in _LABEL_FIELDS[:3]]
    times = [
        _keep(problems, check_times(col[n], n, limits.min_event_time_ms, None))[0]
        for n in ("event_time", "label_time")
    ]
    flag = _keep(problems, check_flags(col["is_fraud"], "is_fraud"))[0]
    if problems:
        _pos, code, name, message = problems[0]
        raise InvalidLabel(code, message, name)
    return Label(ids[0], ids[1], ids[2], times[0], times[1], flag)


def encode_label(label: Label) -> bytes:
    """The JSON bytes of a label (times in epoch ms)."""
    return orjson.dumps(
        {
            "transaction_id": label.transaction_id,
            "customer_id": label.customer_id,
            "terminal_id": label.terminal_id,
            "event_time": label.event_time_ms,
            "label_time": label.label_time_ms,
            "is_fraud": label.is_fraud,
        }
    )


_TX_FIELDS = (
    "transaction_id",
    "event_time",
    "customer_id",
    "terminal_id",
    "amount",
    *OPTIONAL_TEXT,
    "metadata",
)
_LABEL_FIELDS = (
    "transaction_id",
    "customer_id",
    "terminal_id",
    "event_time",
    "label_time",
    "is_fraud",
)


def _parse(
    values: Sequence[bytes | None], max_bytes: int
) -> tuple[list[dict[str, Any]], list[int], list[tuple[int, InvalidTransaction]]]:
    """JSON objects with their input positions, and errors for the rest."""
    docs: list[dict[str, Any]] = []
    positions: list[int] = []
    errors: list[tuple[int, InvalidTransaction]] = []
    for pos, value in enumerate(values):
        if not value:
            errors.append((pos, InvalidTransaction("empty", "the message has no value")))
            continue
        if len(value) > max_bytes:
            msg = f"the message is {len(value)} bytes, over the {max_bytes}-byte limit"
            errors.append((pos, InvalidTransaction("too_large", msg)))
            continue
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            msg = f"the message is not valid JSON: {exc}"
            errors.append((pos, InvalidTransaction("not_json", msg)))
            continue
        if not isinstance(doc, dict):
            msg = "the message must be a JSON object with the transaction fields"
            errors.append((pos, InvalidTransaction("not_object", msg)))
            continue
        docs.append(doc)
        positions.append(pos)
    return docs, positions, errors


def _keep(problems: dict[int, Problem], checked: tuple[list[_T], list[Problem]]) -> list[_T]:
    """Record each position's first problem; hand back the converted column."""
    values, found = checked
    for problem in found:
        problems.setdefault(problem[0], problem)
    return values
