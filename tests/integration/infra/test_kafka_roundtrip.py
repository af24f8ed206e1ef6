"""The real broker: a two-member consumer group reads back exactly what was produced."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

pytestmark = pytest.mark.integration

N = 10_000


def _member(
    bootstrap: str,
    group: str,
    topic: str,
    out: list[tuple[int, int, bytes]],
    assigned: set[int],
    stop: threading.Event,
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )

    # cooperative-sticky hands out and takes back partitions incrementally: keep the
    # member's current ownership, not its first assignment
    def on_assign(_c: Consumer, parts: list) -> None:  # type: ignore[type-arg]
        assigned.update(p.partition for p in parts)

    def on_revoke(_c: Consumer, parts: list) -> None:  # type: ignore[type-arg]
        assigned.difference_update(p.partition for p in parts)

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    try:
        while not stop.is_set():
            for msg in consumer.consume(500, timeout=0.2):
                assert msg.error() is None, msg.error()
                out.append((msg.partition(), msg.offset(), msg.value()))
                consumer.commit(message=msg, asynchronous=True)
    finally:
        consumer.close()


def test_two_member_group_reads_every_message_once_in_partition_order(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    topic = topic_factory("roundtrip", partitions=3)
    stop = threading.Event()
    outs: list[list[tuple[int, int, bytes]]] = [[], []]
    assigned: list[set[int]] = [set(), set()]
    members = [
        threading.Thread(
            target=_member, args=(kafka_bootstrap, group_id, topic, outs[i], assigned[i], stop)
        )
        for i in range(2)
    ]
    for m in members:
        m.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        assigned[0] and assigned[1] and len(assigned[0]) + len(assigned[1]) == 3
    ):
        time.sleep(0.1)
    assert assigned[0] and assigned[1], "both members must own partitions"
    assert assigned[0] | assigned[1] == {0, 1, 2}

    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    sent_per_partition: dict[int, list[bytes]] = defaultdict(list)

    def on_delivery(err: object, msg: object) -> None:
        assert err is None
        sent_per_partition[msg.partition()].append(msg.value())  # type: ignore[attr-defined]

    for i in range(N):
        producer.produce(
            topic, key=f"k{i % 97}".encode(), value=f"{i}".encode(), on_delivery=on_delivery
        )
        producer.poll(0)
    assert producer.flush(30) == 0

    deadline = time.monotonic() + 60
    while len(outs[0]) + len(outs[1]) < N and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # anything extra (a duplicate) would arrive now
    stop.set()
    for m in members:
        m.join(30)

    got = outs[0] + outs[1]
    values = [v for _, _, v in got]
    assert len(values) == N
    assert len(set(values)) == N
    assert set(values) == {f"{i}".encode() for i in range(N)}
    by_partition: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    for partition, offset, value in got:
        by_partition[partition].append((offset, value))
    for partition, items in by_partition.items():
        assert [v for _, v in sorted(items)] == sent_per_partition[partition]
        # each member saw its partition's messages in offset order
        for out in outs:
            offsets = [o for p, o, _ in out if p == partition]
            assert offsets == sorted(offsets)
    assert set(assigned[0]).isdisjoint(assigned[1])
