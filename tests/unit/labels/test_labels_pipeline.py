"""Label batches: decode, dead letters with the original bytes, store writes retried while the
store is down (never skipped), and the join feed; decisions re-keyed by transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from fraudstream.features.exceptions import FeatureStoreUnavailable
from fraudstream.features.labels.applier import Backoff, LabelWriter, decode_batch
from fraudstream.features.labels.deadletter import Header, Source
from fraudstream.features.labels.forwarder import decode_decisions
from fraudstream.features.labels.metrics import LabelMetrics
from fraudstream.features.labels.pipeline import LabelPipeline, RawMessage, join_messages
from fraudstream.features.labels.records import JoinRecord, decode, partition_for
from fraudstream.features.schema import Label, encode_label

T = 1_522_540_800_000
LABELS = [
    Label(f"tx{i}", "c", f"t{i % 2}", T + i, T + 7 * 86_400_000, i % 2 == 0) for i in range(4)
]


class FlakyStore:
    """Fails ``failures`` times, then records what it is given."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or FeatureStoreUnavailable("feature store redis://x unavailable")
        self.calls = 0
        self.applied: list[Label] = []

    def apply_labels(self, labels: Sequence[Label]) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        before = len(self.applied)
        for label in labels:
            if label.transaction_id not in {x.transaction_id for x in self.applied}:
                self.applied.append(label)
        return len(self.applied) - before


class Outbox:
    """A ``Send`` that records messages; its futures resolve at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None, list[Header]]] = []
        self.partitions: list[int | None] = []

    async def __call__(
        self, key: bytes | None, value: bytes | None, headers: list[Header], partition: int | None
    ):
        self.sent.append((key, value, headers))
        self.partitions.append(partition)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _msg(value: bytes | None, offset: int, headers: list[Header] | None = None) -> RawMessage:
    return RawMessage(b"k%d" % offset, value, headers or [], Source("fraud.labels", 1, offset))


def _pipeline(store: FlakyStore, waits: list[float] | None = None):
    async def sleep(s: float) -> None:
        if waits is not None:
            waits.append(s)

    metrics = LabelMetrics()
    writer = LabelWriter(store, 0.1, 0.4, sleep=sleep, on_retry=metrics.store_retries.inc)
    dlq, join = Outbox(), Outbox()
    return LabelPipeline(writer, metrics, dlq, join, 4), metrics, dlq, join


def _joined(join: Outbox) -> list[JoinRecord]:
    return [r for _k, value, _h in join.sent for r in decode(value or b"")]


def _value(metrics: LabelMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_decode_batch_keeps_positions() -> None:
    out = decode_batch([encode_label(LABELS[0]), b"{", None, encode_label(LABELS[1])])
    assert [p for p, _ in out.labels] == [0, 3]
    assert [(p, e.code) for p, e in out.errors] == [(1, "not_json"), (2, "empty")]


def test_labels_go_to_the_store_and_the_join() -> None:
    store = FlakyStore()
    pipeline, metrics, dlq, join = _pipeline(store)
    batch = [_msg(encode_label(x), i) for i, x in enumerate(LABELS)]
    asyncio.run(pipeline.handle_labels(batch + batch[:1]))
    assert store.applied == LABELS
    assert dlq.sent == []
    expected = [
        JoinRecord(x.transaction_id, x.event_time_ms, is_fraud=int(x.is_fraud)) for x in LABELS
    ]
    assert sorted(_joined(join), key=repr) == sorted([*expected, expected[0]], key=repr)
    for (_k, value, _h), partition in zip(join.sent, join.partitions, strict=True):
        assert {partition_for(r.transaction_id, 4) for r in decode(value or b"")} == {partition}
    assert _value(metrics, "fraudstream_labels_applied_total") == 4
    assert _value(metrics, "fraudstream_labels_received_total") == 5


def test_malformed_labels_become_dead_letters_with_the_original_bytes() -> None:
    pipeline, metrics, dlq, join = _pipeline(FlakyStore())
    bad = b'{"transaction_id": "x", "is_fraud": "yes"}'
    own = [("trace", b"abc"), ("empty", b"")]
    asyncio.run(pipeline.handle_labels([_msg(bad, 42, own), _msg(encode_label(LABELS[0]), 43)]))
    ((key, value, headers),) = dlq.sent
    assert key == b"k42" and value == bad
    assert headers[:2] == own
    named = dict(headers[2:])
    assert named["fraudstream.error.class"] == b"InvalidLabel"
    assert named["fraudstream.error.code"] == b"missing_field"
    assert named["fraudstream.error.field"] == b"customer_id"
    assert b"customer_id" in named["fraudstream.error.reason"]
    assert named["fraudstream.source.topic"] == b"fraud.labels"
    assert (named["fraudstream.source.partition"], named["fraudstream.source.offset"]) == (
        b"1",
        b"42",
    )
    assert len(_joined(join)) == 1
    assert _value(metrics, "fraudstream_labels_dead_letters_total", code="missing_field") == 1


def test_store_down_is_retried_with_growing_capped_waits() -> None:
    store = FlakyStore(failures=5)
    waits: list[float] = []
    pipeline, metrics, _dlq, join = _pipeline(store, waits)
    asyncio.run(pipeline.handle_labels([_msg(encode_label(LABELS[0]), 0)]))
    assert store.calls == 6 and store.applied == LABELS[:1]
    assert len(waits) == 5
    ceilings = [0.1, 0.2, 0.4, 0.4, 0.4]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert _value(metrics, "fraudstream_labels_store_retries_total") == 5
    assert len(_joined(join)) == 1


def test_other_store_errors_propagate_and_nothing_is_forwarded() -> None:
    pipeline, _metrics, _dlq, join = _pipeline(FlakyStore(failures=1, error=ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        asyncio.run(pipeline.handle_labels([_msg(encode_label(LABELS[0]), 0)]))
    assert join.sent == []


def test_cancelled_while_waiting_for_the_store() -> None:
    store = FlakyStore(failures=10**9)
    writer = LabelWriter(store, 0.01, 0.01)

    async def attempt() -> None:
        task = asyncio.create_task(writer.write(LABELS))
        # Cancel once it has retried at least once; wait on the count, not a fixed time (each
        # call runs in a worker thread, and a loaded machine can take 100 ms to start one).
        deadline = asyncio.get_running_loop().time() + 10.0
        while store.calls < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(attempt())
    assert store.calls >= 2 and store.applied == []


def test_backoff_doubles_to_its_cap() -> None:
    backoff = Backoff(1.0, 3.0)
    waits = [backoff.next_wait() for _ in range(4)]
    assert 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 1.5 <= waits[3] <= 3


def test_decisions_are_rekeyed_by_transaction() -> None:
    docs = [
        {"transaction_id": f"tx{i}", "event_time": T + i, "amount": 3.0, "decision": "decline"}
        for i in range(8)
    ]
    usable, skipped = decode_decisions([*map(orjson.dumps, docs), b"garbage", None])
    assert skipped == 2
    assert usable == [JoinRecord(f"tx{i}", T + i, 2, 3.0) for i in range(8)]
    messages = join_messages(usable, 4)
    assert [p for p, _ in messages] == sorted({partition_for(r.transaction_id, 4) for r in usable})
    for partition, value in messages:
        part = decode(value)
        assert part == [r for r in usable if partition_for(r.transaction_id, 4) == partition]
