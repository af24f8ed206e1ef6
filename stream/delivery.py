"""Delivery guarantees: how a batch's outputs and its input offsets are made durable together.

``AtLeastOnce``: produce, wait for every acknowledgement, then commit the input offsets.
``ExactlyOnce``: Kafka transactions with the consumer offsets sent inside them, each
committed on a helper thread while the loop scores on (``serve`` holds what it scores
meanwhile in its ``Outbox`` for the next transaction); the error classes follow
librdkafka's transactional pattern (retriable → retry, abortable → abort and rewind to the
committed position, fatal → exit non-zero); a commit still retriable when its timeout is
spent is treated as a stuck producer (see ``ExactlyOnce``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.stream.bounded_call import BoundedCaller, Stalled
from fraudstream.stream.deadletter import DeadLetter, DeadLetters, refused
from fraudstream.stream.exceptions import FatalKafkaError, StreamError

logger = logging.getLogger(__name__)

Header = tuple[str, bytes]


class BatchAborted(StreamError):
    """The batch's outputs were discarded; the consumer was rewound to the committed offsets."""


class Delivery(Protocol):
    producer: Producer

    def begin(self) -> None: ...
    def busy(self) -> bool:
        """A commit is in flight that ``begin`` would wait for."""
        ...

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header] | None = None,
        timestamp: int = 0,
    ) -> None: ...
    def dead_letter(self, letter: DeadLetter) -> None: ...
    def commit(self, offsets: list[TopicPartition]) -> None: ...
    def drain(self, timeout_s: float | None = None) -> None: ...
    def settle(self) -> None: ...
    def poll(self) -> None:
        """Serve the producer's delivery reports without waiting."""
        ...

    def close(self, timeout_s: float) -> None: ...


class AtLeastOnce:
    """Offsets are committed only after the decisions for them are acknowledged.

    The loop does not wait for acknowledgements: each batch's outputs stay in flight while
    the next batch is scored, and a batch's input offsets are committed (asynchronously)
    once its outputs and those of every batch before it are acknowledged, at most once per
    ``commit_interval_s`` (each commit is a write to the broker's offsets log: one per
    micro-batch would be a few hundred a second). Before partitions
    are revoked and at close, ``drain`` waits for what is in flight and commits
    synchronously, so a rebalance hands over no uncommitted acknowledged work. A failed
    delivery rewinds the consumer to the committed offsets: the batches after it are
    scored again (at-least-once).
    """

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        dead_letters: DeadLetters,
        flush_timeout_s: float = 30.0,
        max_in_flight: int = 64,
        commit_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        stopping: threading.Event | None = None,
    ):
        self.producer = producer
        self.consumer = consumer
        self.stopping = stopping
        """Set when the process stops: a produce waiting on a full queue gives up."""
        self.dead_letters = dead_letters
        """The dead-letter topic; a failed dead letter is retried, then given up, but never
        fails its batch."""
        self.flush_timeout_s = flush_timeout_s
        self.max_in_flight = max_in_flight
        """Batches allowed to wait for acknowledgements before the loop waits for them."""
        self.commit_interval_s = commit_interval_s
        """Least time between two asynchronous commits (0: after every batch)."""
        self._clock = clock
        self._acked: dict[tuple[str, int], int] = {}
        """Offsets whose outputs are all acknowledged, not committed yet."""
        self._committed_at = float("-inf")
        self._in_flight: deque[_InFlight] = deque()
        self._current = _InFlight(self)
        self._error: KafkaError | None = None
        self._retry: list[tuple[_InFlight, DeadLetter]] = []
        """Dead letters whose write failed, each still counted outstanding in its batch."""

    def begin(self) -> None:
        self._current = _InFlight(self)

    def busy(self) -> bool:
        return False  # begin never waits: acknowledgements are collected as they come

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header] | None = None,
        timestamp: int = 0,
    ) -> None:
        batch = self._current
        batch.outstanding += 1
        try:
            with _fatal_ends_serve("produce"):
                _produce(
                    self.producer,
                    topic,
                    key,
                    value,
                    headers,
                    timestamp,
                    batch.on_delivery,
                    self.stopping,
                )
        except Exception:  # nothing was queued (a fatal error included): no report comes
            batch.outstanding -= 1
            raise

    def dead_letter(self, letter: DeadLetter) -> None:
        self._write_letter(self._current, letter)

    def _write_letter(self, batch: _InFlight, letter: DeadLetter) -> None:
        while (form := self.dead_letters.form(letter)) is not None:
            batch.outstanding += 1
            try:
                _produce_letter(
                    self.producer, self.dead_letters.topic, form, batch.letter_callback(letter)
                )
                return
            except KafkaException as exc:
                batch.outstanding -= 1
                if not refused(exc.args[0]):
                    _raise_if_fatal(exc.args[0], "produce")
                    raise
                self.dead_letters.failed(letter, exc.args[0].str())  # e.g. too large locally

    def commit(self, offsets: list[TopicPartition]) -> None:
        self._current.offsets = offsets
        self._in_flight.append(self._current)
        self._current = _InFlight(self)
        self.poll()
        if len(self._in_flight) > self.max_in_flight:
            self._flush(self.flush_timeout_s)
        self._settle(asynchronous=True)

    def settle(self) -> None:
        """Serve delivery reports and commit what they completed, without waiting (called
        when the loop is idle, so the last batch before a pause is committed too)."""
        if self._in_flight or self._acked or self._error is not None:
            self.poll()
            self._settle(asynchronous=True)

    def drain(self, timeout_s: float | None = None) -> None:
        """Wait for every output in flight and commit the offsets they cover (synchronously)."""
        timeout = self.flush_timeout_s if timeout_s is None else timeout_s
        remaining = self._flush(timeout)
        while self._retry and not remaining and self._error is None:
            self._rewrite_letters()  # bounded: each letter has MAX_ATTEMPTS writes at most
            remaining = self._flush(timeout)
        if remaining and self._error is None:
            logger.warning(
                "%d outputs unacknowledged at drain; their offsets stay uncommitted", remaining
            )
        self._settle(asynchronous=False)

    def poll(self) -> None:
        with _fatal_ends_serve("poll"):  # confluent-kafka raises fatal errors from poll
            self.producer.poll(0)

    def _flush(self, timeout_s: float) -> int:
        with _fatal_ends_serve("flush"):
            return self.producer.flush(timeout_s)

    def close(self, timeout_s: float) -> None:
        try:
            self.drain(timeout_s)
        except BatchAborted as exc:
            logger.warning("%s", exc)

    def _settle(self, asynchronous: bool) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            self._in_flight.clear()
            self._retry.clear()
            self._commit(asynchronous=False)  # what was acknowledged before the failure
            rewind(self.consumer)
            msg = f"decisions not acknowledged ({err.str()}); offsets not committed, rewound"
            raise BatchAborted(msg)
        self._rewrite_letters()
        while self._in_flight and self._in_flight[0].outstanding == 0:
            for tp in self._in_flight.popleft().offsets:
                self._acked[(tp.topic, tp.partition)] = tp.offset
        if asynchronous and self._clock() - self._committed_at < self.commit_interval_s:
            return
        self._commit(asynchronous)

    def _rewrite_letters(self) -> None:
        retry, self._retry = self._retry, []
        for batch, letter in retry:
            batch.outstanding -= 1
            self._write_letter(batch, letter)

    def _commit(self, asynchronous: bool) -> None:
        if not self._acked:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._acked.items()]
        self._acked = {}
        self._committed_at = self._clock()
        try:
            if asynchronous:  # two calls: the stubs overload on the literal
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. partitions no longer owned: re-read, not lost
            logger.warning("offset commit failed: %s", exc.args[0])


class _InFlight:
    """One batch's outputs awaiting acknowledgement, and the input offsets they cover."""

    __slots__ = ("offsets", "outstanding", "owner")

    def __init__(self, owner: AtLeastOnce) -> None:
        self.owner = owner
        self.outstanding = 0
        self.offsets: list[TopicPartition] = []

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        self.outstanding -= 1
        if err is not None and self.owner._error is None:
            self.owner._error = err

    def letter_callback(self, letter: DeadLetter) -> Callable[[KafkaError | None, Any], None]:
        """A dead letter's delivery report: a failure queues another attempt (the batch
        waits for it) or gives the letter up; it never fails the batch."""
        owner = self.owner

        def on_letter(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                self.outstanding -= 1
                owner.dead_letters.written(letter)
            elif not refused(err):
                self.on_delivery(err, msg)
            elif owner.dead_letters.failed(letter, err.str()):
                owner._retry.append((self, letter))  # still outstanding until rewritten
            else:
                self.outstanding -= 1

        return on_letter


class ExactlyOnce:
    """Consume–score–produce in transactions, offsets included.

    A transaction's commit (its offsets sent, then the transaction committed) runs on a
    helper thread while the loop reads and scores on; ``busy`` tells whether it is still in
    flight, and the next ``begin`` waits for it before producing, so its errors surface
    there. A read_committed reader sees a transaction's decisions once its commit is done.

    Every transactional call runs on that thread under a bound (the timeout plus
    ``STALL_MARGIN_S``): librdkafka can block in ``send_offsets_to_transaction`` forever
    after a broker restart, whatever the timeout given (librdkafka#5456, #5511). A call past
    its bound means the producer is stuck: a new producer with the same transactional id is
    initialised (which fences the stuck one and aborts its open transaction), the consumer
    is rewound and the batch is redone. A commit that returns a retriable error (messages
    not flushed, no answer) for its whole timeout counts as stuck too: librdkafka goes on
    with it in the background and refuses ``abort_transaction`` until it is resumed, and
    after a broker restart it was seen never to flush four messages in 30 s. Rewinding to
    the committed offsets after the fence is right whichever way the old transaction ended.
    Without a ``make_producer`` factory a stuck call is fatal instead (exit, supervisor
    restart).
    """

    STALL_MARGIN_S = 5.0
    RETRY_PAUSE_S = 0.05
    """Pause before a transactional call is tried again after a retriable error."""
    TIMEOUT_S = 30.0
    """Default timeout of each transactional call."""

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        dead_letters: DeadLetters,
        timeout_s: float = TIMEOUT_S,
        make_producer: Callable[[], Producer] | None = None,
        stopping: threading.Event | None = None,
        on_commit: Callable[[int, float], None] = lambda _n, _s: None,
    ):
        self.producer = producer
        self.consumer = consumer
        self.dead_letters = dead_letters
        """The dead-letter topic; a dead letter whose write failed the transaction is
        written smaller when the batch is redone, then given up."""
        self.timeout_s = timeout_s
        self.replacements = 0
        self.stopping = stopping
        """Set when the process stops: a produce waiting on a full queue gives up."""
        self.on_commit = on_commit
        """Called, from the loop's thread, with (outputs, seconds) of every commit done (the
        planner's cost model)."""
        self._make_producer = make_producer
        self._in_txn = False
        self._outputs = 0
        self._pending: Future[object] | None = None
        self._pending_outputs = 0
        self._pending_step = ["commit_transaction"]
        self._caller = BoundedCaller()
        self._init()

    @property
    def stuck_after_s(self) -> float:
        """How long a transactional call may take before the producer counts as stuck."""
        return self.timeout_s + self.STALL_MARGIN_S

    def begin(self) -> None:
        """Wait for the previous batch's commit (raising its failure), then open this one's."""
        self._finish_commit()
        if not self._in_txn:
            self._call(self.producer.begin_transaction, "begin_transaction")
            self._in_txn = True
            self._outputs = 0

    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header] | None = None,
        timestamp: int = 0,
    ) -> None:
        self._outputs += 1
        try:
            _produce(self.producer, topic, key, value, headers, timestamp, None, self.stopping)
        except KafkaException as exc:
            self._produce_refused(exc)

    def poll(self) -> None:
        try:
            self.producer.poll(0)
        except KafkaException as exc:  # confluent-kafka raises fatal errors from poll
            self._produce_refused(exc)

    def dead_letter(self, letter: DeadLetter) -> None:
        letters = self.dead_letters

        def on_letter(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                letters.written(letter)
            elif refused(err):  # the transaction aborts; the redone batch writes it smaller
                letters.failed(letter, err.str())

        while (form := letters.form(letter)) is not None:
            try:
                _produce_letter(self.producer, letters.topic, form, on_letter)
                return
            except KafkaException as exc:
                if not refused(exc.args[0]):
                    self._produce_refused(exc)
                letters.failed(letter, exc.args[0].str())

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Start committing the open transaction with ``offsets`` (on the helper thread);
        the next ``begin``, ``settle`` or ``drain`` waits for it."""
        if not self._in_txn:
            return
        producer, timeout, outputs = self.producer, self.timeout_s, self._outputs
        meta = self.consumer.consumer_group_metadata() if offsets else None
        step = ["send_offsets_to_transaction" if offsets else "commit_transaction"]

        def job() -> float:
            began = time.perf_counter()
            deadline = time.monotonic() + timeout
            if offsets:
                _retried(
                    lambda: producer.send_offsets_to_transaction(
                        offsets, meta, max(deadline - time.monotonic(), 0.1)
                    ),
                    step[0],
                    deadline,
                )
                step[0] = "commit_transaction"
            _retried(
                lambda: producer.commit_transaction(max(deadline - time.monotonic(), 0.1)),
                step[0],
                deadline,
            )
            return time.perf_counter() - began

        self._pending = self._caller.submit(job)
        self._pending_outputs = outputs
        self._pending_step = step

    def drain(self, timeout_s: float | None = None) -> None:
        """Wait for the commit in flight (a rebalance hands over committed work only)."""
        self._finish_commit()

    def settle(self) -> None:
        """The loop is idle: finish the commit in flight if it is done (its failure is raised
        here). Never waits: the decisions become visible when the commit is done, whoever
        looks, and records arriving meanwhile are scored at once."""
        if self._pending is not None and self._pending.done():
            self._finish_commit()

    def _finish_commit(self) -> None:
        if self._pending is None:
            return
        future, self._pending = self._pending, None
        try:
            try:
                try:
                    seconds = self._caller.wait(future, self.stuck_after_s, "commit")
                except Stalled:  # name the call it is stuck in
                    raise Stalled(self._pending_step[0], self.stuck_after_s) from None
            except KafkaException as exc:
                if _resumable(exc.args[0]):
                    # a commit still going on inside librdkafka after its whole timeout: it
                    # may only be resumed (abort_transaction answers _CONFLICT meanwhile), so
                    # the producer counts as stuck and a fresh one fences it
                    raise Stalled(self._pending_step[0], self.timeout_s) from None
                self._abort(exc)
            else:
                self.on_commit(self._pending_outputs, float(seconds))  # type: ignore[arg-type]
        except Stalled as stall:
            self._replace(stall)
        finally:
            self._in_txn = False

    def abort(self, reason: str) -> None:
        """Abort the open transaction on purpose (tests, shutdown) and rewind."""
        self._finish_commit()
        if self._in_txn:
            producer = self.producer
            try:
                self._call(lambda: producer.abort_transaction(self.timeout_s), "abort")
            except Stalled as stall:
                self._replace(stall)
            finally:
                self._in_txn = False
        rewind(self.consumer)
        logger.warning("transaction aborted: %s", reason)

    def close(self, timeout_s: float) -> None:
        """Abort what is open and flush, bounded; a producer already fenced or stuck (the
        reason serve is stopping) is reported, not raised again."""
        producer = self.producer
        try:
            if self._pending is not None:  # a commit in flight is let finish
                future, self._pending = self._pending, None
                self._caller.wait(future, timeout_s, "commit")
                self._in_txn = False
            if self._in_txn:
                self._in_txn = False
                self._caller.run(lambda: producer.abort_transaction(timeout_s), timeout_s, "abort")
            self._caller.run(lambda: producer.flush(timeout_s), timeout_s, "flush")
        except KafkaException as exc:
            logger.warning("producer not closed cleanly: %s", exc.args[0].str())
        except Stalled as stall:
            logger.warning("producer not closed cleanly: %s", stall.text)
        finally:
            self._caller.stop()

    def _init(self) -> None:
        """init_transactions; a stuck one is fatal (nothing left to fence it with)."""
        producer = self.producer
        try:
            self._call(lambda: producer.init_transactions(self.timeout_s), "init_transactions")
        except Stalled as stall:
            msg = f"{stall.text}: the Kafka producer is stuck; exiting"
            raise FatalKafkaError(msg) from None

    def _retry(self, call: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self._caller.run(call, self.stuck_after_s, what)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal():
                    raise FatalKafkaError(_fatal_text(what, err)) from None
                if (
                    _resumable(err)
                    and err.code() != KafkaError._CONFLICT  # another call holds the producer
                    and (time.monotonic() < deadline)
                ):
                    logger.info("%s retriable error, retrying: %s", what, err.str())
                    time.sleep(self.RETRY_PAUSE_S)
                    continue
                raise

    def _produce_refused(self, exc: KafkaException) -> NoReturn:
        """A produce (or poll) the producer itself refused. Once the transaction has failed
        (a message timed out or was refused, the producer was fenced) librdkafka answers
        every produce with _STATE or _FATAL, neither naming the cause: aborting tells them
        apart. An abortable transaction is aborted and the batch redone (``BatchAborted``);
        a fatally failed producer answers the abort with its real error (fenced, ...), and
        serve exits with it."""
        err: KafkaError = exc.args[0]
        if err.fatal() or err.txn_requires_abort() or err.code() in _REFUSED_IN_FAILED_TXN:
            self._in_txn = False
            self._abort(exc)
        raise exc

    def _abort(self, exc: KafkaException) -> NoReturn:
        err: KafkaError = exc.args[0]
        if err.fatal():
            raise FatalKafkaError(_fatal_text("transaction", err)) from None
        logger.warning("transaction failed (%s); aborting and rewinding", err.str())
        producer = self.producer
        self._call(lambda: producer.abort_transaction(self.timeout_s), "abort_transaction")
        rewind(self.consumer)
        msg = f"transaction aborted: {err.str()}"
        raise BatchAborted(msg)

    def _replace(self, stall: Stalled) -> None:
        """The producer is stuck: fence it with a fresh one, rewind, redo the batch."""
        if self._make_producer is None:
            msg = f"{stall.text}: the Kafka producer is stuck; exiting"
            raise FatalKafkaError(msg) from None
        logger.error(
            "%s: the Kafka producer is stuck; replacing it (the same transactional id fences it)",
            stall.text,
        )
        self._caller.abandon()  # its thread stays blocked in the stuck producer
        self._caller = BoundedCaller()
        self.producer = self._make_producer()
        self._init()
        self.replacements += 1
        rewind(self.consumer)
        msg = f"transaction abandoned: {stall.text}"
        raise BatchAborted(msg)

    def _call(self, call: Callable[[], object], what: str) -> None:
        try:
            self._retry(call, what)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            raise FatalKafkaError(_fatal_text(what, err)) from None


def _retried(call: Callable[[], object], what: str, deadline: float) -> None:
    """``call`` again on retriable errors until ``deadline``; other errors are raised (the
    waiting loop aborts, or exits on a fatal one)."""
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if not _resumable(err) or time.monotonic() >= deadline:
                raise
            logger.info("%s retriable error, retrying: %s", what, err.str())


def _resumable(err: KafkaError) -> bool:
    """A retriable error that needs no abort: the same call may be made again."""
    return bool(err.retriable() and not err.txn_requires_abort() and not err.fatal())


_REFUSED_IN_FAILED_TXN = (KafkaError._STATE, KafkaError._FATAL)
"""What librdkafka answers a produce with once the transaction failed (abortable) or the
producer did (fatal, e.g. fenced)."""


def _raise_if_fatal(err: KafkaError, what: str) -> None:
    """An idempotent producer's fatal error (librdkafka then answers every produce with
    _FATAL) ends serve with its one-line error: only a new producer can go on."""
    if err.fatal() or err.code() == KafkaError._FATAL:
        raise FatalKafkaError(_fatal_text(what, err))


@contextmanager
def _fatal_ends_serve(what: str) -> Iterator[None]:
    """``_raise_if_fatal`` on a KafkaException from the block; others go on up."""
    try:
        yield
    except KafkaException as exc:
        _raise_if_fatal(exc.args[0], what)
        raise


def _fatal_text(what: str, err: KafkaError) -> str:
    if err.code() == KafkaError._FENCED or "fenced" in err.str().lower():
        return (
            f"{what}: this producer was fenced ({err.str()}): either a newer instance took "
            "the same transactional id, or the broker aborted a transaction that outlived "
            "transaction.timeout.ms (a process paused or starved that long); exiting so that "
            "a fresh start takes over"
        )
    return f"{what}: fatal Kafka error {err.name()}: {err.str()}"


def _produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[Header] | None,
    timestamp: int,
    callback: Callable[[KafkaError | None, Any], None] | None,
    stopping: threading.Event | None = None,
) -> None:
    kwargs: dict[str, Any] = {"key": key, "value": value}
    if headers:
        kwargs["headers"] = headers
    if timestamp:
        kwargs["timestamp"] = timestamp
    if callback is not None:
        kwargs["on_delivery"] = callback
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:  # local queue full: serve delivery reports, then retry
            if stopping is not None and stopping.is_set():
                msg = "stopping while the producer's queue is full: this batch is not committed"
                raise BatchAborted(msg) from None
            producer.poll(0.05)


def _produce_letter(
    producer: Producer,
    topic: str,
    letter: DeadLetter,
    callback: Callable[[KafkaError | None, Any], None],
) -> None:
    _produce(producer, topic, letter.key, letter.value, letter.headers, 0, callback)


def rewind(consumer: Consumer) -> None:
    """Seek every assigned partition back to its committed offset (or the reset point)."""
    assignment = consumer.assignment()
    if not assignment:
        return
    for tp in consumer.committed(assignment, timeout=30):
        if tp.offset >= 0:
            consumer.seek(tp)
        else:
            consumer.seek(TopicPartition(tp.topic, tp.partition, -2))  # OFFSET_BEGINNING
