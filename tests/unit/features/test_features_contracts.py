"""The published JSON Schemas agree with the decoders on a corpus of examples."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features.contracts import SCHEMA_NAMES, load_schema, schema_errors
from fraudstream.features.exceptions import InvalidLabel
from fraudstream.features.schema import DecodeLimits, decode_label, decode_transactions

NOW = 1_700_000_000_000
T0 = 1_522_540_800_000

BASE: dict[str, Any] = {
    "transaction_id": "tx-1",
    "event_time": T0,
    "customer_id": "c1",
    "terminal_id": "t1",
    "amount": 12.5,
}
REMOVE = object()


def _with(**over: Any) -> dict[str, Any]:
    doc = {**BASE, **over}
    return {k: v for k, v in doc.items() if v is not REMOVE}


VALID_TX = [
    BASE,
    _with(amount=0),
    _with(amount=1e9),
    _with(amount=7),
    _with(customer_id=123, terminal_id=-5, transaction_id=2**63 - 1),
    _with(customer_id=12.0),
    _with(event_time="2018-04-01T00:00:00Z"),
    _with(event_time="2018-04-01 00:00:00.123456+05:30"),
    _with(event_time=1.5e12),
    _with(currency="EUR", channel=None, mcc=5411, country="FR", metadata={"x": [1, {"y": 2}]}),
    _with(mcc="5411", metadata=None, unknown_field={"anything": True}),
    _with(transaction_id="é" * 128),
]
INVALID_TX = [
    _with(transaction_id=REMOVE),
    _with(event_time=REMOVE),
    _with(customer_id=REMOVE),
    _with(terminal_id=REMOVE),
    _with(amount=REMOVE),
    _with(amount=-1),
    _with(amount=1e9 + 0.5),
    _with(amount=True),
    _with(amount="1"),
    _with(amount=None),
    _with(customer_id=False),
    _with(customer_id=""),
    _with(customer_id=1.5),
    _with(customer_id=[1]),
    _with(transaction_id="x" * 129),
    _with(transaction_id=2**63),
    _with(terminal_id=None),
    _with(event_time="2018-04-01"),
    _with(event_time="2018-04-01T00:00:00"),
    _with(event_time="April 1st"),
    _with(event_time=946_684_799_999),
    _with(event_time=T0 + 0.5),
    _with(event_time=True),
    _with(currency=1),
    _with(channel=["pos"]),
    _with(mcc=54.5),
    _with(country=False),
    _with(metadata="text"),
    _with(metadata=[]),
]
# Limits a schema cannot express are the decoder's alone: payload size, future times, and
# calendar validity of a well-formed date-time string.
DECODER_ONLY_INVALID = [
    _with(event_time=NOW + 2 * 86_400_000),
    _with(event_time="2018-02-30T00:00:00Z"),
    _with(metadata={"pad": "x" * 70_000}),
]


NO_FUTURE_LIMIT = DecodeLimits(max_future_ms=2**62)


def _decoder_accepts(doc: dict[str, Any], limits: DecodeLimits = NO_FUTURE_LIMIT) -> bool:
    # stdlib json: it writes integers of any size, which orjson.loads reads back as floats
    value = json.dumps(doc).encode()
    return decode_transactions([value], limits, now_ms=NOW).ok_index == [0]


@pytest.mark.parametrize("doc", VALID_TX)
def test_valid_transactions_pass_both(doc: dict[str, Any]) -> None:
    assert schema_errors("transaction", doc) == []
    assert _decoder_accepts(doc)


@pytest.mark.parametrize("doc", INVALID_TX)
def test_invalid_transactions_fail_both(doc: dict[str, Any]) -> None:
    assert schema_errors("transaction", doc) != []
    assert not _decoder_accepts(doc)


@pytest.mark.parametrize("doc", DECODER_ONLY_INVALID)
def test_decoder_only_limits(doc: dict[str, Any]) -> None:
    assert schema_errors("transaction", doc) == []
    assert not _decoder_accepts(doc, DecodeLimits())


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.just("2018-04-01T00:00:00Z"),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.integers(min_value=T0, max_value=NOW),
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: anything
            for name in (
                "transaction_id",
                "event_time",
                "customer_id",
                "terminal_id",
                "amount",
                "mcc",
                "metadata",
            )
        },
    )
)
def test_decoder_and_schema_agree_on_generated_documents(doc: dict[str, Any]) -> None:
    assert (schema_errors("transaction", doc) == []) == _decoder_accepts(doc)


LABEL = {
    "transaction_id": "tx-1",
    "customer_id": "c1",
    "terminal_id": 9,
    "event_time": T0,
    "label_time": "2018-04-08T00:00:00Z",
    "is_fraud": True,
}


@pytest.mark.parametrize(
    ("doc", "valid"),
    [
        (LABEL, True),
        ({**LABEL, "is_fraud": False, "note": "extra"}, True),
        ({**LABEL, "is_fraud": 1}, False),
        ({**LABEL, "is_fraud": None}, False),
        ({k: v for k, v in LABEL.items() if k != "terminal_id"}, False),
        ({**LABEL, "label_time": "yesterday"}, False),
        ({**LABEL, "event_time": 5}, False),
    ],
)
def test_label_schema_and_decoder_agree(doc: dict[str, Any], valid: bool) -> None:
    assert (schema_errors("label", doc) == []) is valid
    try:
        decode_label(orjson.dumps(doc))
        decoded = True
    except InvalidLabel:
        decoded = False
    assert decoded is valid


DECISION = {
    "transaction_id": "tx-1",
    "customer_id": "c1",
    "terminal_id": "t1",
    "amount": 12.5,
    "event_time": "2018-04-01T00:00:00Z",
    "score": 0.93,
    "decision": "decline",
    "model_version": "xgb-3",
    "reasons": [{"feature": "terminal_risk_7d", "contribution": 1.2}],
    "latency_ms": {"total": 8.5, "features": 2.0, "model": 3.1},
    "budget_ms": 50,
    "deadline_met": True,
    "degraded": None,
    "scored_at": T0 + 10,
}


@pytest.mark.parametrize(
    ("over", "valid"),
    [
        ({}, True),
        ({"degraded": "partial_features", "decision": "review"}, True),
        ({"degraded": "rules", "reasons": []}, True),
        ({"degraded": "slow"}, False),
        ({"decision": "maybe"}, False),
        ({"score": 1.5}, False),
        ({"latency_ms": {"features": 1.0}}, False),
        ({"latency_ms": {"total": "fast"}}, False),
        ({"deadline_met": "yes"}, False),
        ({"reasons": [{"feature": "x"}]}, False),
    ],
)
def test_decision_schema(over: dict[str, Any], valid: bool) -> None:
    assert (schema_errors("decision", {**DECISION, **over}) == []) is valid


def test_every_schema_is_packaged_and_names_itself() -> None:
    for name in SCHEMA_NAMES:
        schema = load_schema(name)
        assert schema["$id"].endswith(f"/{name}.schema.json")
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
