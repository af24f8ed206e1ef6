"""Delivery against the real broker. At-least-once: offsets are committed only once the
outputs for them (and for every batch before them) are acknowledged; a failed delivery
commits nothing more and rewinds the consumer. Exactly-once: a producer stuck in a
transactional call is replaced and fenced, and the batch is redone once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.features.exceptions import InvalidTransaction
from fraudstream.stream.deadletter import (
    MAX_ATTEMPTS,
    DeadLetter,
    DeadLetters,
    Source,
    error_headers,
)
from fraudstream.stream.delivery import AtLeastOnce, BatchAborted, Delivery, ExactlyOnce
from fraudstream.stream.exceptions import FatalKafkaError
from fraudstream.stream.kafka.limits import BROKER_DEFAULT

pytestmark = pytest.mark.integration


def _consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0)])
    return consumer


def _fill(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        producer.produce(topic, value=str(i).encode())
    assert producer.flush(30) == 0


def _take(consumer: Consumer, n: int) -> list:  # type: ignore[type-arg]
    got: list = []  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        got += [m for m in consumer.consume(n - len(got), timeout=0.5) if m.error() is None]
    assert len(got) == n
    return got


def _committed(consumer: Consumer, topic: str) -> int:
    return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset


def _settled_at(
    delivery: Delivery, consumer: Consumer, topic: str, offset: int, timeout_s: float
) -> int:
    """Settle as serve's idle loop does until ``offset`` is committed or the timeout
    passed; the committed offset then."""
    deadline = time.monotonic() + timeout_s
    while _committed(consumer, topic) != offset and time.monotonic() < deadline:
        delivery.settle()  # what serve does when no input is waiting
        time.sleep(0.1)
    return _committed(consumer, topic)


def _copy_batch(delivery: Delivery, consumer: Consumer, sink: str, n: int) -> None:
    """One loop step: take ``n`` records, produce each to ``sink``, commit past them."""
    msgs = _take(consumer, n)
    delivery.begin()
    for m in msgs:
        delivery.produce(sink, None, m.value())
    delivery.commit([TopicPartition(msgs[0].topic(), 0, msgs[-1].offset() + 1)])


def _nowhere() -> DeadLetters:
    """A dead-letter topic for deliveries whose tests write no dead letter."""
    return DeadLetters("no-dead-letters-expected", BROKER_DEFAULT)


def _reader(bootstrap: str, group: str, topic: str) -> Consumer:
    """A read_committed consumer of partition 0 from its start."""
    out = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed"}
    )
    out.assign([TopicPartition(topic, 0, 0)])
    return out


def test_offsets_follow_acknowledged_outputs(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    source, sink = topic_factory("alo-in"), topic_factory("alo-out")
    _fill(kafka_bootstrap, source, 300)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    delivery = AtLeastOnce(Producer({"bootstrap.servers": kafka_bootstrap}), consumer, _nowhere())
    for _ in range(30):
        _copy_batch(delivery, consumer, sink, 10)
    delivery.drain()
    assert _committed(consumer, source) == 300
    out = _reader(kafka_bootstrap, group_id + "-r", sink)
    assert len(_take(out, 300)) == 300
    out.close()
    consumer.close()


def test_a_failed_delivery_commits_nothing_after_it_and_rewinds(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    source, sink = topic_factory("alo-in"), topic_factory("alo-out")
    _fill(kafka_bootstrap, source, 40)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 1500})
    delivery = AtLeastOnce(producer, consumer, _nowhere())

    _copy_batch(delivery, consumer, sink, 10)  # acknowledged and committed
    delivery.drain()
    assert _committed(consumer, source) == 10

    second = _take(consumer, 10)  # one output goes to a topic that does not exist
    delivery.begin()
    for m in second:
        delivery.produce(sink, None, m.value())
    delivery.produce(f"{sink}-missing", None, b"lost")
    delivery.commit([TopicPartition(source, 0, 20)])
    third = _take(consumer, 10)  # fine on its own, but after the failed batch
    delivery.begin()
    for m in third:
        delivery.produce(sink, None, m.value())
    with pytest.raises(BatchAborted, match="not acknowledged"):
        delivery.commit([TopicPartition(source, 0, 30)])
        delivery.drain()
    assert _committed(consumer, source) == 10
    # the consumer was rewound to the committed offset: the failed batch is read again
    assert _take(consumer, 1)[0].offset() == 10
    consumer.close()


def test_an_idle_loop_commits_its_last_batch_without_draining(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    source, sink = topic_factory("alo-in"), topic_factory("alo-out")
    _fill(kafka_bootstrap, source, 5)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    delivery = AtLeastOnce(Producer({"bootstrap.servers": kafka_bootstrap}), consumer, _nowhere())
    _copy_batch(delivery, consumer, sink, 5)
    assert _settled_at(delivery, consumer, source, 5, timeout_s=30) == 5
    consumer.close()


def test_commits_are_spaced_by_the_interval_and_a_drain_commits_the_rest(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    source, sink = topic_factory("alo-in"), topic_factory("alo-out")
    _fill(kafka_bootstrap, source, 30)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    now = [0.0]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    delivery = AtLeastOnce(
        producer, consumer, _nowhere(), commit_interval_s=1.0, clock=lambda: now[0]
    )

    _copy_batch(delivery, consumer, sink, 10)
    assert producer.flush(10) == 0
    assert _settled_at(delivery, consumer, source, 10, 5) == 10  # the first commit goes at once
    _copy_batch(delivery, consumer, sink, 10)
    assert producer.flush(10) == 0
    # acknowledged, but the interval has not passed
    assert _settled_at(delivery, consumer, source, 20, 5) == 10
    now[0] = 1.0
    assert _settled_at(delivery, consumer, source, 20, 5) == 20
    _copy_batch(delivery, consumer, sink, 10)
    delivery.drain()  # a revoke or a stop commits everything acknowledged
    assert _committed(consumer, source) == 30
    consumer.close()


class _StuckOnce(Producer):
    """A real transactional producer whose ``send_offsets_to_transaction`` blocks until
    released, whatever its timeout: what librdkafka#5456 does after a broker restart."""

    def __init__(self, conf: dict[str, Any], release: threading.Event) -> None:
        super().__init__(conf)
        self.release = release

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.release.wait()
        super().send_offsets_to_transaction(*args)


def test_a_stuck_transactional_call_fences_the_producer_and_redoes_the_batch(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    source, sink = topic_factory("eos-in"), topic_factory("eos-out")
    _fill(kafka_bootstrap, source, 40)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    conf = {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{group_id}-txn"}
    release = threading.Event()
    delivery = ExactlyOnce(
        _StuckOnce(conf, release),
        consumer,
        _nowhere(),
        timeout_s=2.0,
        make_producer=lambda: Producer(conf),
    )
    delivery.STALL_MARGIN_S = 0.5

    started = time.monotonic()
    with pytest.raises(BatchAborted, match="send_offsets_to_transaction did not return"):
        _copy_batch(delivery, consumer, sink, 20)  # the commit runs on the helper thread
        delivery.drain()  # where the loop waits for it
    assert time.monotonic() - started < 10
    assert delivery.replacements == 1
    release.set()  # the stuck call now runs on a fenced producer: its error goes nowhere
    _copy_batch(delivery, consumer, sink, 20)  # rewound: the same 20 again, then the rest
    _copy_batch(delivery, consumer, sink, 20)
    delivery.drain()
    delivery.close(10)
    assert _committed(consumer, source) == 40

    out = _reader(kafka_bootstrap, group_id + "-r", sink)
    values = sorted(int(m.value()) for m in _take(out, 40))
    assert values == list(range(40))  # the stuck producer's 20 outputs were aborted
    assert out.consume(10, timeout=2) == []
    out.close()
    consumer.close()


class _CommitTimesOut(Producer):
    """A real transactional producer whose first commit is started with no time to finish
    (librdkafka goes on with it in the background and then refuses any other transactional
    call until the commit is resumed), and whose every later commit call answers the
    retriable timeout: what a commit that cannot flush after a broker restart looks like."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.commits = 0

    def commit_transaction(self, *args: Any) -> None:
        self.commits += 1
        if self.commits == 1:
            super().commit_transaction(0.0)
        time.sleep(0.05)
        raise KafkaException(
            KafkaError(KafkaError._TIMED_OUT, "commit_transaction timed out", retriable=True)
        )


def test_a_commit_retriable_for_its_whole_timeout_fences_the_producer_and_goes_on(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    """Not an abort (librdkafka answers _CONFLICT while the commit is pending, and serve
    once spun on that for 30 s and exited): the producer is replaced, the batch redone if
    its transaction did not commit, and every record lands once."""
    source, sink = topic_factory("eos-in"), topic_factory("eos-out")
    _fill(kafka_bootstrap, source, 40)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    conf = {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{group_id}-txn"}
    stuck = _CommitTimesOut(conf)
    delivery = ExactlyOnce(
        stuck, consumer, _nowhere(), timeout_s=2.0, make_producer=lambda: Producer(conf)
    )

    with pytest.raises(BatchAborted, match="commit_transaction did not return within 2 s"):
        _copy_batch(delivery, consumer, sink, 20)
        delivery.drain()
    assert stuck.commits > 1  # the commit was retried until its timeout was spent
    assert delivery.replacements == 1
    while _committed(consumer, source) < 40:
        _copy_batch(delivery, consumer, sink, 40 - max(_committed(consumer, source), 0))
        delivery.drain()
    delivery.close(10)

    out = _reader(kafka_bootstrap, group_id + "-r", sink)
    values = sorted(int(m.value()) for m in _take(out, 40))
    assert values == list(range(40))  # once each, whichever way the first commit ended
    assert out.consume(10, timeout=2) == []
    out.close()
    consumer.close()


def test_an_idle_settle_never_waits_for_the_commit_in_flight(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    """serve settles whenever no input waits; a commit still in flight is left to finish
    on its own (records arriving meanwhile are scored at once) and finished by a later
    settle."""
    source, sink = topic_factory("eos-in"), topic_factory("eos-out")
    _fill(kafka_bootstrap, source, 10)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    conf = {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{group_id}-txn"}
    release = threading.Event()
    delivery = ExactlyOnce(_StuckOnce(conf, release), consumer, _nowhere(), timeout_s=10)
    _copy_batch(delivery, consumer, sink, 10)  # its commit now waits on the helper thread
    started = time.monotonic()
    delivery.settle()
    assert time.monotonic() - started < 2
    assert delivery.busy()
    release.set()
    assert _settled_at(delivery, consumer, source, 10, 30) == 10
    assert not delivery.busy()
    delivery.close(10)
    consumer.close()


def _refused_produce(delivery: Delivery, sink: str) -> None:
    """Produce to ``sink`` and flush until the producer refuses a produce outright (at most
    20 tries): what serve's next batch meets once the transaction has failed underneath."""
    for i in range(20):
        delivery.produce(sink, None, str(i).encode())
        with contextlib.suppress(KafkaException):  # a flush raises the failure it sees
            delivery.producer.flush(2)  # type: ignore[attr-defined]
    pytest.fail("the producer never refused a produce")


def test_a_produce_on_a_fenced_producer_exits_with_the_fencing_error(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    """Once fenced, librdkafka answers every produce with _STATE ("Erroneous state"), which
    names no cause; serve must exit with its one-line fatal error naming the fencing (a
    traceback here once failed CI), not a KafkaException."""
    source, sink = topic_factory("eos-in"), topic_factory("eos-out")
    _fill(kafka_bootstrap, source, 10)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    conf = {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{group_id}-txn"}
    delivery = ExactlyOnce(Producer(conf), consumer, _nowhere(), timeout_s=10)
    delivery.begin()
    delivery.produce(sink, None, b"before")
    assert delivery.producer.flush(10) == 0
    Producer(conf).init_transactions(10)  # a newer instance with the same id
    with pytest.raises(FatalKafkaError, match="fenced"):
        _refused_produce(delivery, sink)
    delivery.close(5)
    consumer.close()


def test_a_produce_refused_in_a_failed_transaction_aborts_it_and_the_batch_is_redone(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str
) -> None:
    """A message the broker refused fails the transaction (abortable): the next produce is
    refused with _STATE, the transaction is aborted, the consumer rewound, and the redone
    batch commits once."""
    source, sink = topic_factory("eos-in"), topic_factory("eos-out")
    small = topic_factory("eos-small", config={"max.message.bytes": "200"})
    _fill(kafka_bootstrap, source, 10)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    conf = {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{group_id}-txn"}
    delivery = ExactlyOnce(Producer(conf), consumer, _nowhere(), timeout_s=10)
    _take(consumer, 10)
    delivery.begin()
    delivery.produce(small, None, b"v" * 1000)  # refused by the broker, not locally
    with pytest.raises(BatchAborted):
        _refused_produce(delivery, sink)
    _copy_batch(delivery, consumer, sink, 10)  # rewound: the same ten again
    delivery.drain()
    delivery.close(10)
    assert _committed(consumer, source) == 10
    out = _reader(kafka_bootstrap, group_id + "-r", sink)
    assert sorted(int(m.value()) for m in _take(out, 10)) == list(range(10))
    assert out.consume(10, timeout=2) == []
    out.close()
    consumer.close()


def _letter(value: bytes, offset: int) -> DeadLetter:
    source = Source("input", 0, offset)
    error = InvalidTransaction("invalid_json", "", "not JSON")
    return DeadLetter(b"key", value, [("own", b"1"), *error_headers(error, source)], source, 1)


def _copy_with_letter(delivery: Delivery, consumer: Consumer, sink: str, n: int) -> None:
    """``_copy_batch``, with a dead letter of the batch's last record."""
    msgs = _take(consumer, n)
    delivery.begin()
    for m in msgs:
        delivery.produce(sink, None, m.value())
    delivery.dead_letter(_letter(b"v" * 50_000, msgs[-1].offset()))
    delivery.commit([TopicPartition(msgs[0].topic(), 0, msgs[-1].offset() + 1)])


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_refused_dead_letter_is_written_smaller_and_never_stops_the_batch(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str, guarantee: str
) -> None:
    """The dead-letter topic refuses more than 8,000 bytes but the limit serve read says
    more (the topic was altered after the start): the whole letter and its first cut are
    refused by the broker, the third form (headers only) is written; the batch's outputs
    and offsets go through either way."""
    source, sink = topic_factory("dl-in"), topic_factory("dl-out")
    dlq = topic_factory("dl-dlq", config={"max.message.bytes": "8000"})
    _fill(kafka_bootstrap, source, 20)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    lost: list[str] = []
    letters = DeadLetters(dlq, BROKER_DEFAULT, on_lost=lambda _l, why: lost.append(why))
    delivery = _delivery(guarantee, kafka_bootstrap, consumer, letters, group_id)
    for _ in range(MAX_ATTEMPTS + 1):  # exactly-once redoes the batch after each refusal
        try:
            _copy_with_letter(delivery, consumer, sink, 10)
            delivery.drain()
            break
        except BatchAborted:
            assert guarantee == "exactly-once"
    _copy_batch(delivery, consumer, sink, 10)
    delivery.drain()
    delivery.close(10)
    assert _committed(consumer, source) == 20
    assert lost == []
    dead = _take(_reader(kafka_bootstrap, group_id + "-d", dlq), 1)
    headers = dict(dead[0].headers())
    assert headers["fraudstream.truncated"] == b"value,key,headers"  # the third form
    assert headers["fraudstream.original.value.size"] == b"50000"
    assert headers["fraudstream.source.offset"] == b"9"
    out = _reader(kafka_bootstrap, group_id + "-r", sink)
    assert sorted(int(m.value()) for m in _take(out, 20)) == list(range(20))
    assert out.consume(10, timeout=1) == []
    consumer.close()


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_dead_letter_refused_in_every_form_is_given_up_and_the_offsets_move_on(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_id: str, guarantee: str
) -> None:
    source, sink = topic_factory("dl-in"), topic_factory("dl-out")
    dlq = topic_factory("dl-dlq", config={"max.message.bytes": "200"})
    _fill(kafka_bootstrap, source, 10)
    consumer = _consumer(kafka_bootstrap, group_id, source)
    lost: list[str] = []
    letters = DeadLetters(dlq, BROKER_DEFAULT, on_lost=lambda _l, why: lost.append(why))
    delivery = _delivery(guarantee, kafka_bootstrap, consumer, letters, group_id)
    for _ in range(MAX_ATTEMPTS + 1):
        try:
            _copy_with_letter(delivery, consumer, sink, 10)
            delivery.drain()
            break
        except BatchAborted:
            assert guarantee == "exactly-once"
    delivery.drain()
    delivery.close(10)
    assert _committed(consumer, source) == 10
    assert len(lost) == 1 and "too large" in lost[0].lower()
    assert _reader(kafka_bootstrap, group_id + "-d", dlq).consume(10, timeout=2) == []
    consumer.close()


def _delivery(
    guarantee: str, bootstrap: str, consumer: Consumer, letters: DeadLetters, group_id: str
) -> Delivery:
    if guarantee == "at-least-once":
        return AtLeastOnce(Producer({"bootstrap.servers": bootstrap}), consumer, letters)
    conf = {"bootstrap.servers": bootstrap, "transactional.id": f"{group_id}-txn"}
    return ExactlyOnce(Producer(conf), consumer, letters, timeout_s=10)
