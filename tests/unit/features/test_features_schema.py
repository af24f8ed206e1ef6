"""Decoding transactions and labels: typed records, stable error codes, never a crash."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.features.exceptions import InvalidLabel, InvalidTransaction
from fraudstream.features.schema import (
    DecodeLimits,
    Label,
    Transaction,
    TransactionBatch,
    decode_label,
    decode_transaction,
    decode_transactions,
    encode_label,
    encode_transaction,
)

NOW = 1_700_000_000_000
T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def _tx(**over: Any) -> bytes:
    doc: dict[str, Any] = {
        "transaction_id": "tx-1",
        "event_time": T0,
        "customer_id": "c1",
        "terminal_id": "t1",
        "amount": 12.5,
    }
    doc.update(over)
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()


def _error(value: bytes | None, limits: DecodeLimits | None = None) -> InvalidTransaction:
    result = decode_transactions([value], limits, now_ms=NOW)
    assert len(result.batch) == 0
    assert [pos for pos, _e in result.errors] == [0]
    return result.errors[0][1]


def test_a_valid_message_becomes_a_typed_record() -> None:
    value = _tx(customer_id=42, mcc=5411, currency="EUR", metadata={"k": [1]}, extra="kept")
    tx = decode_transaction(value)
    assert tx == Transaction(
        "tx-1", T0, "42", "t1", 12.5, currency="EUR", mcc="5411", metadata={"k": [1]}
    )


def test_batch_keeps_input_order_and_positions() -> None:
    values = [_tx(transaction_id="a"), b"nope", None, _tx(transaction_id="b", amount=3)]
    result = decode_transactions(values, now_ms=NOW)
    assert result.ok_index == [0, 3]
    assert result.batch.transaction_id == ["a", "b"]
    assert result.batch.event_time_ms.dtype == np.int64
    assert result.batch.amount.tolist() == [12.5, 3.0]
    assert [(pos, e.code) for pos, e in result.errors] == [(1, "not_json"), (2, "empty")]
    assert [t.transaction_id for t in result.transactions] == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "code", "field"),
    [
        (b"", "empty", ""),
        (b"{bad", "not_json", ""),
        (b"[1, 2]", "not_object", ""),
        (b'"text"', "not_object", ""),
        (b'{"amount": NaN}', "not_json", ""),
        (b"[" * 2000 + b"]" * 2000, "not_json", ""),
        (_tx(transaction_id=_DROP), "missing_field", "transaction_id"),
        (_tx(event_time=_DROP), "missing_field", "event_time"),
        (_tx(amount=_DROP), "missing_field", "amount"),
        (_tx(amount=True), "bad_type", "amount"),
        (_tx(amount="12.5"), "bad_type", "amount"),
        (_tx(amount=-0.01), "bad_value", "amount"),
        (_tx(amount=1e9 + 1), "bad_value", "amount"),
        (_tx(customer_id=True), "bad_type", "customer_id"),
        (_tx(customer_id=1.5), "bad_type", "customer_id"),
        (_tx(customer_id=None), "bad_type", "customer_id"),
        (_tx(terminal_id=""), "bad_value", "terminal_id"),
        (_tx(transaction_id="x" * 129), "bad_value", "transaction_id"),
        (_tx(transaction_id=2**64 - 1), "bad_value", "transaction_id"),
        (
            _tx(customer_id=_DROP)[:-1] + b',"customer_id":1' + b"0" * 30 + b"}",
            "bad_value",
            "customer_id",
        ),
        (_tx(event_time="2018-04-01"), "bad_value", "event_time"),
        (_tx(event_time="2018-02-30T00:00:00Z"), "bad_value", "event_time"),
        (_tx(event_time="2018-04-01T00:00:00+25:00"), "bad_value", "event_time"),
        (_tx(event_time=1.5), "bad_type", "event_time"),
        (_tx(event_time=False), "bad_type", "event_time"),
        (_tx(event_time=946_684_799_999), "bad_value", "event_time"),
        (_tx(event_time=NOW + 86_400_001), "bad_value", "event_time"),
        (_tx(currency=3), "bad_type", "currency"),
        (_tx(metadata=[1]), "bad_type", "metadata"),
    ],
)
def test_each_bad_message_has_a_stable_code_and_field(value: bytes, code: str, field: str) -> None:
    err = _error(value)
    assert (err.code, err.field) == (code, field)
    if field:
        assert field in str(err)


def test_first_problem_in_field_order_is_reported() -> None:
    err = _error(_tx(transaction_id=_DROP, amount="x"))
    assert (err.code, err.field) == ("missing_field", "transaction_id")


def test_size_limit_and_future_limit_are_configurable() -> None:
    big = _tx(metadata={"pad": "x" * 100})
    assert _error(big, DecodeLimits(max_bytes=100)).code == "too_large"
    assert _error(None).code == "empty"
    later = _tx(event_time=NOW + 3 * 86_400_000)
    assert _error(later).field == "event_time"
    ok = decode_transactions([later], DecodeLimits(max_future_ms=4 * 86_400_000), now_ms=NOW)
    assert ok.ok_index == [0]


def test_time_forms_all_land_on_epoch_ms() -> None:
    forms = [
        T0 + 1500,
        float(T0 + 1500),
        "2018-04-01T00:00:01.5Z",
        "2018-04-01t00:00:01.500999z",
        "2018-04-01 02:00:01.5+02:00",
        "2018-03-31T23:00:01.5-01:00",
    ]
    result = decode_transactions([_tx(event_time=f) for f in forms], now_ms=NOW)
    assert result.errors == []
    assert result.batch.event_time_ms.tolist() == [T0 + 1500] * len(forms)


def test_duplicate_keys_last_one_wins() -> None:
    value = b'{"transaction_id":"a","event_time":1522540800000,"customer_id":"c",'
    value += b'"terminal_id":"t","amount":"bad","amount":7}'
    assert decode_transaction(value).amount == 7.0


def test_integer_amount_and_integral_float_ids_are_accepted() -> None:
    tx = decode_transaction(_tx(amount=3, terminal_id=12.0))
    assert (tx.amount, tx.terminal_id) == (3.0, "12")


def test_transaction_round_trips_through_bytes() -> None:
    tx = Transaction("id", T0, "c", "t", 0.1, channel="ecom", metadata={"a": None})
    assert decode_transaction(encode_transaction(tx)) == tx


def test_label_round_trip_and_errors() -> None:
    label = Label("id", "c", "t", T0, T0 + 7 * 86_400_000, True)
    assert decode_label(encode_label(label)) == label
    doc = orjson.loads(encode_label(label))
    for broken, code, field in [
        ({**doc, "is_fraud": 1}, "bad_type", "is_fraud"),
        ({k: v for k, v in doc.items() if k != "label_time"}, "missing_field", "label_time"),
        ({**doc, "terminal_id": ""}, "bad_value", "terminal_id"),
    ]:
        with pytest.raises(InvalidLabel) as info:
            decode_label(orjson.dumps(broken))
        assert (info.value.code, info.value.field) == (code, field)
    with pytest.raises(InvalidLabel) as info:
        decode_label(b"\xff")
    assert info.value.code == "not_json"


def test_batch_from_transactions_and_take() -> None:
    txs = [Transaction(str(i), T0 + i, f"c{i}", "t", float(i)) for i in range(4)]
    batch = TransactionBatch.from_transactions(txs)
    assert len(batch) == 4
    picked = batch.take([3, 1])
    assert picked.transaction_id == ["3", "1"]
    assert picked.event_time_ms.tolist() == [T0 + 3, T0 + 1]
    assert picked.amount.tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="same length"):
        TransactionBatch(["a"], [], ["t"], np.zeros(1, np.int64), np.zeros(1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=300)), max_size=6))
def test_arbitrary_bytes_never_raise(values: list[bytes | None]) -> None:
    result = decode_transactions(values, now_ms=NOW)
    positions = sorted(result.ok_index + [pos for pos, _e in result.errors])
    assert positions == list(range(len(values)))
    assert all(isinstance(e, InvalidTransaction) for _pos, e in result.errors)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
field_values = st.one_of(
    json_values,
    st.integers(min_value=T0, max_value=NOW),
    st.sampled_from(["2018-04-01T00:00:00Z", "x" * 129, "", "c7"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: field_values
            for name in ("transaction_id", "event_time", "customer_id", "terminal_id", "amount")
        },
    )
)
def test_arbitrary_json_objects_decode_or_fail_typed(doc: dict[str, Any]) -> None:
    result = decode_transactions([orjson.dumps(doc)], now_ms=NOW)
    assert len(result.ok_index) + len(result.errors) == 1
    if result.errors:
        assert result.errors[0][1].code in {"missing_field", "bad_type", "bad_value"}
