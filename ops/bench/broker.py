"""Kafka plumbing of the bench: per-run topics, backlog and paced producers, reading a topic
back with its timestamps, and waiting for an output topic to reach a count."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

Item = tuple[bytes, bytes]
"""A (key, value) pair to produce."""
COMPRESSION = "lz4"
"""Codec of the bench's input producers: compressed, as replay --speed max (and many a
production producer) sends, so every consumer under test must decode it."""


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    timestamp_ms: int
    """Kafka timestamp (CreateTime: when the producer called produce())."""
    partition: int
    """Partition it sits in."""
    value: bytes
    """Payload."""


class Topics:
    """Creates uniquely named topics for one run and deletes them all at the end."""

    def __init__(self, bootstrap: str, run_id: str) -> None:
        self.bootstrap = bootstrap
        self.run_id = run_id
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        self.created: list[str] = []

    def create(self, role: str, partitions: int = 1, append_time: bool = False) -> str:
        """A new topic; with ``append_time`` its timestamps are the broker's append times
        (what throughput is measured on: delivered messages, whoever produced them)."""
        name = f"bench-{self.run_id}-{role}"
        config = {"message.timestamp.type": "LogAppendTime"} if append_time else {}
        futures = self.admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)],
            operation_timeout=30,
            request_timeout=30,
        )
        futures[name].result()
        self.created.append(name)
        _wait_metadata(self.admin, name, partitions)
        return name

    def delete_all(self, extra_prefixes: Sequence[str] = ()) -> None:
        """Delete this run's topics, and any topic starting with one of ``extra_prefixes``
        (faust's internal topics)."""
        names = set(self.created)
        if extra_prefixes:
            listed = self.admin.list_topics(timeout=10).topics
            names |= {t for t in listed if t.startswith(tuple(extra_prefixes))}
        if not names:
            return
        for fut in self.admin.delete_topics(sorted(names), operation_timeout=30).values():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
        self.created = []


def _wait_metadata(admin: AdminClient, name: str, partitions: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        topic = admin.list_topics(name, timeout=5).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        time.sleep(0.1)
    msg = f"topic {name} has no metadata 15 s after creation: is the broker healthy?"
    raise RuntimeError(msg)


def produce_backlog(bootstrap: str, topic: str, items: Sequence[Item]) -> float:
    """Produce every item as fast as the client allows; returns the seconds it took."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": COMPRESSION,
        }
    )
    producer.list_topics(topic, timeout=10)
    started = time.monotonic()
    for key, value in items:
        _produce(producer, topic, key, value)
    if producer.flush(120) != 0:
        msg = f"backlog for {topic} not acknowledged within 120 s"
        raise RuntimeError(msg)
    return time.monotonic() - started


def produce_paced(
    bootstrap: str,
    topic: str,
    items: Sequence[Item],
    rate: float,
    on_progress: Callable[[float], None] | None = None,
) -> float:
    """Produce the items at ``rate`` messages/s (the Kafka timestamp is taken at produce(),
    so it is the offered arrival time); returns the seconds it took. ``on_progress`` gets
    the elapsed seconds about every 100 ms."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 1,
            "acks": "all",
            "compression.type": COMPRESSION,
        }
    )
    producer.list_topics(topic, timeout=10)
    started = time.monotonic()
    sent, next_report = 0, 0.1
    while sent < len(items):
        elapsed = time.monotonic() - started
        due = min(len(items), int(elapsed * rate) + 1)
        for key, value in items[sent:due]:
            _produce(producer, topic, key, value)
        sent = max(sent, due)
        producer.poll(0)
        if on_progress is not None and elapsed >= next_report:
            on_progress(elapsed)
            next_report = elapsed + 0.1
        time.sleep(0.0005)
    if producer.flush(60) != 0:
        msg = f"paced messages for {topic} not acknowledged within 60 s"
        raise RuntimeError(msg)
    return time.monotonic() - started


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:
            producer.poll(0.05)


def end_offsets(consumer: Consumer, topic: str) -> int | None:
    """Sum of the high watermarks of ``topic`` (messages written, when nothing is aborted);
    None while the broker cannot say (a leader moving right after creation)."""
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    except KafkaException:
        return None


def wait_count(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout_s: float,
    stall_s: float = 30.0,
    alive: Callable[[], bool] | None = None,
) -> tuple[int, str | None]:
    """Wait until ``topic`` holds ``expected`` messages; returns (count, why it stopped
    short or None). Stops early when no message arrived for ``stall_s`` seconds or
    ``alive()`` turns false."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4().hex}"})
    try:
        return _wait_count(consumer, topic, expected, timeout_s, stall_s, alive)
    finally:
        consumer.close()


def _wait_count(
    consumer: Consumer,
    topic: str,
    expected: int,
    timeout_s: float,
    stall_s: float,
    alive: Callable[[], bool] | None,
) -> tuple[int, str | None]:
    deadline = time.monotonic() + timeout_s
    count, last_change, last_count = 0, time.monotonic(), -1
    while True:
        count = end_offsets(consumer, topic) or count
        now = time.monotonic()
        if count >= expected:
            return count, None
        if count != last_count:
            last_count, last_change = count, now
        if alive is not None and not alive():
            return count, f"process exited after {count} of {expected} outputs"
        if now - last_change > stall_s:
            return count, f"no output for {stall_s:.0f} s after {count} of {expected}"
        if now > deadline:
            return count, f"timed out after {timeout_s:.0f} s with {count} of {expected}"
        time.sleep(0.25)


def wait_committed(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout_s: float,
    alive: Callable[[], bool] | None = None,
) -> tuple[int, str | None]:
    """``wait_count`` for a topic written in transactions: counts what a read_committed
    reader gets (the high watermarks would count the transactions' markers too)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-waiter-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    count, deadline = 0, time.monotonic() + timeout_s
    try:
        while count < expected:
            count += sum(1 for m in consumer.consume(10_000, timeout=0.25) if m.error() is None)
            if alive is not None and not alive():
                return count, f"process exited after {count} of {expected} outputs"
            if time.monotonic() > deadline:
                return count, f"timed out after {timeout_s:.0f} s with {count} of {expected}"
    finally:
        consumer.close()
    return count, None


def read_all(
    bootstrap: str, topic: str, timeout_s: float = 300, committed: int | None = None
) -> list[Record]:
    """Every message of ``topic`` from the start: read until a poll comes back empty with
    as many messages read as the high watermarks say were written, or the timeout. For a
    topic written in transactions pass ``committed``, the messages expected: it is read
    with read_committed (aborted messages skipped) until that many came (the high
    watermarks also count the transactions' markers)."""
    conf = {
        "bootstrap.servers": bootstrap,
        # named after the topic, so the run's cleanup deletes it with the topic
        "group.id": f"{topic}-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }
    if committed is not None:
        conf["isolation.level"] = "read_committed"
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(10_000, timeout=0.5)
            for m in msgs:
                if m.error() is None:
                    out.append(Record(m.timestamp()[1], m.partition(), m.value()))
            if msgs:
                continue
            want = committed if committed is not None else end_offsets(consumer, topic)
            if len(out) >= (want or sys.maxsize):
                break
    finally:
        consumer.close()
    return out


def group_assignment(admin: AdminClient, group: str) -> list[int]:
    """Partitions held by each member of ``group`` (empty while it is rebalancing)."""
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except KafkaException:
        return []
    if str(desc.state).rsplit(".", 1)[-1] != "STABLE":
        return []
    return [len(m.assignment.topic_partitions) for m in desc.members]


def wait_assignment(
    admin: AdminClient, group: str, members: int, partitions: int, timeout_s: float
) -> float | None:
    """Seconds until ``group`` is stable with ``members`` members holding ``partitions``
    partitions in all; None at the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        held = group_assignment(admin, group)
        if len(held) == members and sum(held) == partitions:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def delete_groups(admin: AdminClient, prefix: str) -> None:
    """Delete the consumer groups whose id starts with ``prefix`` (best effort)."""
    try:
        listed = admin.list_consumer_groups(request_timeout=10).result()
    except KafkaException:
        return
    ids = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
    if not ids:
        return
    for fut in admin.delete_consumer_groups(ids, request_timeout=10).values():
        try:
            fut.result()
        except KafkaException:
            continue
