"""``fraudstream.features.labels.faust_fixes`` against a real broker: labels the fetcher brings in
while a
restarted worker seeks are all stored (faust used to clear them from the queues); the seek
after a recovery puts every partition at its committed offset, at 0 where 0 was committed,
and, where nothing was committed, where the reset policy says."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from confluent_kafka import Producer

from fraudstream.features.labels import faust_fixes
from fraudstream.features.labels.app import build_app
from fraudstream.features.labels.faust_fixes import LabelFaustApp, seek_to_committed_or_reset
from fraudstream.features.labels.settings import LabelSettings
from fraudstream.features.schema import Label, encode_label
from tests.integration.labels.harness import (
    LabelTopics,
    Message,
    Worker,
    count_labels,
    produce,
    wait_for,
)
from tests.serving import topic_end_offsets

pytestmark = pytest.mark.integration

PER_PARTITION = 10
DAY_MS = 86_400_000
SLOW_SEEK = "tests.integration.labels.slow_seek_worker"


def _labels(start: int, n: int) -> list[Message]:
    t0 = 1_522_540_800_000
    return [
        (
            f"tx{i}".encode(),
            encode_label(
                Label(f"tx{i}", f"c{i % 41}", f"T{i % 29}", t0 + i * 1000, t0 + DAY_MS, i % 9 == 0)
            ),
            None,
        )
        for i in range(start, start + n)
    ]


@pytest.mark.reliability
def test_labels_fetched_while_a_restarted_worker_seeks_are_all_stored(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    group_id: str,
) -> None:
    # a first run fills the KPI table and is killed; the restart recovers the table from
    # its changelog, so its fetcher runs while faust seeks (made 1.5 s long), and fetches
    # labels faster than the agent (2 per batch) takes them: the queue is full at the end.
    # Whether the fetcher has begun by then depends on the rebalance (CI once had a restart
    # whose queues were still empty when its seek ended), so the kill and restart are
    # repeated, three times at most, until one restart has events queued there; every
    # restart must store every label.
    produce(kafka_bootstrap, label_topics.labels, _labels(0, 300))
    worker = start_worker(module=SLOW_SEEK, env={"SLOW_SEEK_S": "1.5"}, max_batch=2)
    wait_for(lambda: count_labels(redis_url, redis_prefix) >= 100, 60, "100 labels stored")
    changelog = f"{group_id}-kpi-changelog"
    wait_for(
        lambda: sum(topic_end_offsets(kafka_bootstrap, changelog, 2)) > 0,
        60,
        f"records in {changelog}",
    )
    total, seen = 300, []
    for _ in range(3):
        worker.kill()
        total += produce(kafka_bootstrap, label_topics.labels, _labels(total, 1500))
        worker.start()
        wait_for(
            lambda want=total: count_labels(redis_url, redis_prefix) == want,
            60,
            f"all {total} labels stored after the restart",
            detail=lambda: (
                f"{count_labels(redis_url, redis_prefix)} stored; consumer: {worker.consumer()}"
            ),
        )
        queued = re.findall(r"slow_seek_worker: (\d+) events queued", worker.log.read_text())
        seen.append(queued)
        if queued and int(queued[-1]) > 0:
            return
    pytest.fail(f"no restart had events queued when its seek ended, so no test: {seen}")


def _fill(bootstrap: str, topic: str, partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for p in range(partitions):
        for i in range(PER_PARTITION):
            producer.produce(topic, value=b"%d" % i, partition=p)
    assert producer.flush(30) == 0


async def _positions_after_seek(
    bootstrap: str, topic: str, group: str, committed: dict[int, int], reset: str
) -> dict[int, int]:
    """Commit ``committed``, move every partition of ``topic`` to offset 8 (as if records
    were fetched and dropped), seek as the worker does; the positions then."""
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset=reset,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        if committed:
            await consumer.commit(
                {tps[p]: OffsetAndMetadata(offset, "") for p, offset in committed.items()}
            )
        for tp in tps:
            consumer.seek(tp, 8)
        found = await seek_to_committed_or_reset(consumer, reset)
        assert {tp.partition: found[tp] for tp in tps} == {p: committed.get(p) for p in range(3)}
        return {tp.partition: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("committed", "reset", "expected"),
    [
        # committed 4 → 4; committed 0 → 0 (aiokafka alone leaves it at 8); none → the start
        ({0: 4, 1: 0}, "earliest", {0: 4, 1: 0, 2: 0}),
        # none → the end
        ({0: 3}, "latest", {0: 3, 1: PER_PARTITION, 2: PER_PARTITION}),
    ],
    ids=["earliest", "latest"],
)
def test_every_partition_is_repositioned_committed_or_not(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_id: str,
    committed: dict[int, int],
    reset: str,
    expected: dict[int, int],
) -> None:
    topic = topic_factory("seek", partitions=3)
    _fill(kafka_bootstrap, topic, 3)
    positions = asyncio.run(
        _positions_after_seek(kafka_bootstrap, topic, group_id, committed, reset)
    )
    assert positions == expected


def test_the_worker_app_seeks_with_it(kafka_bootstrap: str) -> None:
    settings = LabelSettings(bootstrap_servers=kafka_bootstrap, redis_url="redis://unused")
    built = build_app(settings, store=_NoStore())
    assert isinstance(built.app, LabelFaustApp)
    assert type(built.app.transport).Consumer is faust_fixes._Consumer


class _NoStore:
    def apply_labels(self, labels: object) -> int:
        raise AssertionError("not used")
