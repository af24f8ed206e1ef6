"""A real worker says when labels stop while decisions keep arriving: ``fraudstream_labels_stale``
turns 1 and a warning names the threshold setting; a label turns it back to 0."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Producer

from fraudstream.features.schema import Label, encode_label
from tests.integration.labels.harness import LabelTopics, Worker, wait_for

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000
STALE_AFTER_S = 2


def _decision(n: int) -> bytes:
    return orjson.dumps(
        {
            "transaction_id": f"d{n}", "customer_id": "c", "terminal_id": "T",
            "event_time": T0 + n, "amount": 10.0, "decision": "approve", "score": 0.1,
        }
    )  # fmt: skip


def _label(n: int) -> bytes:
    return encode_label(Label(f"l{n}", "c", "T", T0 + n, T0 + 86_400_000 + n, False))


def test_stale_while_decisions_flow_without_labels_and_fresh_again_after_one(
    start_worker: Callable[..., Worker], label_topics: LabelTopics, kafka_bootstrap: str
) -> None:
    worker = start_worker(labels_stale_after_s=STALE_AFTER_S)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    sent = 0

    def decisions_flow_until(check: Callable[[], bool]) -> Callable[[], bool]:
        def step() -> bool:
            nonlocal sent
            producer.produce(label_topics.decisions, key=b"c", value=_decision(sent))
            producer.flush(10)
            sent += 1
            return check()

        return step

    def stale() -> bool:
        return worker.metric("fraudstream_labels_stale") == 1

    producer.produce(label_topics.labels, key=b"l0", value=_label(0), partition=0)
    producer.flush(10)
    wait_for(lambda: worker.metric("fraudstream_labels_received_total") == 1, 30, "a label")
    assert worker.metric("fraudstream_labels_stale") == 0
    applied_at = worker.metric("fraudstream_labels_last_applied_timestamp_seconds", partition="0")

    wait_for(decisions_flow_until(stale), 30, "labels stale", every_s=0.3, detail=worker.tail)
    silence = worker.metric("fraudstream_labels_silence_seconds")
    assert silence > STALE_AFTER_S
    assert time.time() - applied_at >= silence
    wait_for(lambda: "labels stale: none applied for" in worker.tail(20_000), 10, "the warning")
    assert "--labels-stale-after-s" in worker.tail(20_000)

    producer.produce(label_topics.labels, key=b"l1", value=_label(1), partition=1)
    producer.flush(10)
    wait_for(
        decisions_flow_until(lambda: not stale()), 30, "labels fresh", every_s=0.3,
        detail=worker.tail,
    )  # fmt: skip
    assert worker.metric("fraudstream_labels_received_total") == 2
    newest = worker.metric("fraudstream_labels_newest_label_time_seconds", partition="1")
    assert newest == (T0 + 86_400_000 + 1) / 1000
    wait_for(lambda: "labels flowing again" in worker.tail(20_000), 10, "the recovery line")
