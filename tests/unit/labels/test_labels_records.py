"""Join records: decisions as the scorer writes them, labels, and the join topic's bytes."""

from __future__ import annotations

import orjson
import pytest

from fraudstream.features.labels.records import (
    JoinRecord,
    decode,
    encode,
    from_decision,
    from_label,
    partition_for,
)
from fraudstream.features.schema import Label

T = 1_522_540_800_000
GOOD = {
    "transaction_id": "tx-1",
    "customer_id": "c",
    "terminal_id": "t",
    "amount": 12.5,
    "event_time": T,
    "score": 0.9,
    "decision": "review",
}


def test_decision_message_to_record() -> None:
    assert from_decision(orjson.dumps(GOOD)) == JoinRecord("tx-1", T, 1, 12.5)
    text = from_decision(orjson.dumps({**GOOD, "event_time": "2018-04-01T00:00:00Z"}))
    assert text == JoinRecord("tx-1", T, 1, 12.5)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"[1,2]",
        orjson.dumps({**GOOD, "decision": "maybe"}),
        orjson.dumps({**GOOD, "transaction_id": ""}),
        orjson.dumps({**GOOD, "transaction_id": 5}),
        orjson.dumps({**GOOD, "amount": "12"}),
        orjson.dumps({**GOOD, "amount": True}),
        orjson.dumps({**GOOD, "event_time": None}),
        orjson.dumps({**GOOD, "event_time": 12}),
        orjson.dumps({k: v for k, v in GOOD.items() if k != "amount"}),
    ],
)
def test_unusable_decisions_give_none(value: bytes | None) -> None:
    assert from_decision(value) is None


def test_label_record_and_roundtrip() -> None:
    label = Label("tx-9", "c", "t", T, T + 1, True)
    record = from_label(label)
    assert record == JoinRecord("tx-9", T, is_fraud=1) and record.is_label
    decision = JoinRecord("tx-8", T, 2, 0.1)
    assert not decision.is_label
    assert decode(encode([record, decision])) == [record, decision]
    assert decode(encode([])) == []


@pytest.mark.parametrize("value", [b'{"a": 1}', b"[[1, 2]]", b"nope"])
def test_decode_names_bad_bytes(value: bytes) -> None:
    with pytest.raises(ValueError, match="is not a list of"):
        decode(value)


def test_partition_is_stable_and_spread() -> None:
    assert partition_for("tx-1", 8) == 2  # crc32: the same in every process and release
    assert len({partition_for(f"tx-{i}", 8) for i in range(100)}) == 8
