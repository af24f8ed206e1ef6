"""The decisions' way into the KPI join (``DecisionForwarder``, its own thread and consumer
group): an upgraded worker starts where its faust group read decisions to, its offsets are
committed once forwarded, a forwarder that cannot go on says so, and two workers share the
decisions and the join between them, each hour counted once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from fraudstream.features.labels.forwarder import DecisionForwarder, group_of
from fraudstream.features.labels.metrics import LabelMetrics
from fraudstream.features.labels.settings import LabelSettings
from tests.integration.labels.harness import LabelTopics, Message, Worker, produce, wait_for

T = 1_522_540_800_000  # 2018-04-01T00:00Z


def _decisions(first: int, n: int) -> list[Message]:
    return [
        (
            b"c%d" % (i % 7),
            orjson.dumps(
                {
                    "transaction_id": f"tx{i}",
                    "event_time": T + i,
                    "amount": 1.0,
                    "decision": "review",
                }
            ),
            None,
        )
        for i in range(first, first + n)
    ]


def _settings(
    kafka_bootstrap: str, label_topics: LabelTopics, group_id: str, **extra: object
) -> LabelSettings:
    """What a worker of this test would run with (the store is not used here)."""
    return LabelSettings(
        bootstrap_servers=kafka_bootstrap,
        redis_url="redis://unused",  # type: ignore[arg-type]
        group_id=group_id,
        decisions_topic=label_topics.decisions,
        **extra,  # type: ignore[arg-type]
    )


def _counted(worker: Worker) -> int:
    return sum(sum(h["decisions"].values()) for h in worker.kpis())


def _committed(bootstrap: str, group: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(2)]
        return [tp.offset for tp in consumer.committed(parts, timeout=10)]
    finally:
        consumer.close()


def test_an_upgraded_worker_reads_decisions_from_where_its_faust_group_was(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    group_id: str,
) -> None:
    produce(kafka_bootstrap, label_topics.decisions, _decisions(0, 40))
    # what a worker reading decisions through faust left: its group's offsets at the end
    old = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group_id})
    ends = [
        TopicPartition(label_topics.decisions, p, old.get_watermark_offsets(tp, timeout=10)[1])
        for p, tp in enumerate(TopicPartition(label_topics.decisions, p) for p in range(2))
    ]
    assert sum(tp.offset for tp in ends) == 40
    old.commit(offsets=ends, asynchronous=False)
    old.close()
    produce(kafka_bootstrap, label_topics.decisions, _decisions(40, 10))

    worker = start_worker()
    wait_for(lambda: _counted(worker) == 10, 60, "the 10 decisions after the faust group's")
    time.sleep(2)
    assert _counted(worker) == 10, "decisions the faust group had read were read again"
    assert worker.metric("fraudstream_kpi_decisions_forwarded_total") == 10
    group = group_of(_settings(kafka_bootstrap, label_topics, group_id))
    wait_for(
        lambda: sum(_committed(kafka_bootstrap, group, label_topics.decisions)) == 50,
        30,
        "the forwarder's offsets committed at the end of the topic",
    )

    def progress() -> list[dict[str, int]]:
        rows: list[dict[str, int]] = orjson.loads(worker.get("/consumer"))["decisions"]
        return rows

    def at_the_end() -> bool:
        rows = progress()
        ends = (sum(r["position"] or 0 for r in rows), sum(r["highwater"] or 0 for r in rows))
        return [r["partition"] for r in rows] == [0, 1] and ends == (50, 50)

    wait_for(at_the_end, 30, "/consumer showing the decisions read to the end", detail=progress)
    assert [r["lag"] for r in progress()] == [0, 0]
    assert worker.metric("fraudstream_kpi_decisions_lag") == 0


def test_a_forwarder_that_cannot_reach_its_join_topic_reports_it(
    kafka_bootstrap: str, label_topics: LabelTopics, group_id: str
) -> None:
    # no worker ever created this group's join topic
    settings = _settings(kafka_bootstrap, label_topics, group_id, connect_timeout_s=1)
    forwarder = DecisionForwarder(settings, LabelMetrics(), None)
    errors: list[BaseException] = []
    done = threading.Event()

    def on_fatal(exc: BaseException) -> None:
        errors.append(exc)
        done.set()

    forwarder.start(on_fatal)
    assert done.wait(30), "the forwarder neither failed nor gave up"
    forwarder.stop()
    assert f"join topic {group_id}-kpi-join not found" in str(errors[0])


def test_two_workers_report_each_hour_once_between_them(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """A worker that hands a join partition to a second one stops counting it."""
    produce(kafka_bootstrap, label_topics.decisions, _decisions(0, 200))
    first = start_worker()
    wait_for(lambda: _counted(first) == 200, 60, "the first worker counting all 200")
    second = start_worker(workdir=tmp_path / "second", data_dir=tmp_path / "second" / "faust")

    def split() -> bool:
        counts = (_counted(first), _counted(second))
        return all(counts) and sum(counts) == 200

    wait_for(
        split,
        90,
        "the two workers' KPIs to add up to the 200 decisions, each counting some",
        detail=lambda: f"first {_counted(first)}, second {_counted(second)}",
    )


def test_the_lag_is_what_the_forwarder_has_not_read(
    kafka_bootstrap: str, label_topics: LabelTopics, group_id: str
) -> None:
    produce(kafka_bootstrap, label_topics.decisions, _decisions(0, 40))
    settings = _settings(kafka_bootstrap, label_topics, group_id)
    metrics = LabelMetrics()
    forwarder = DecisionForwarder(settings, metrics, None)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{group_id}-lag"})
    try:
        start = [TopicPartition(label_topics.decisions, p, 0) for p in range(2)]
        consumer.commit(offsets=start, asynchronous=False)
        consumer.assign(start)
        read: list[object] = []
        deadline = time.monotonic() + 30
        while len(read) < 10 and time.monotonic() < deadline:
            read += consumer.consume(10 - len(read), 1.0)
        forwarder._note_progress(consumer)  # what its thread does before each batch
    finally:
        consumer.close()
    rows = forwarder.progress()
    assert [r["partition"] for r in rows] == [0, 1]
    assert sum(r["highwater"] or 0 for r in rows) == 40
    assert sum(r["lag"] or 0 for r in rows) == 40 - len(read) == 30
    assert metrics.registry.get_sample_value("fraudstream_kpi_decisions_lag") == 30
