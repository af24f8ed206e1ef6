"""Publish history into Kafka: transactions in event-time order keyed by customer, a fraud
label for each fraud at its event time + the label delay, interleaved in time order, paced
as fast as possible, at a speed-up of event time, or at a fixed rate.

The plan (what to send, in which order, when) is pure NumPy; the sender takes an injected
producer, clock and sleep, so pacing is tested without a broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from fraudstream.features.definitions import MS_PER_DAY
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.kafka import KafkaConnection
from fraudstream.features.schema import Label, encode_label
from fraudstream.stream.exceptions import FatalKafkaError

logger = logging.getLogger(__name__)

TRANSACTION, LABEL = 1, 0
"""Message kinds; a label sorts before a transaction of the same instant (it is known then)."""
OPTIONAL_FIELDS = ("currency", "channel", "mcc", "country")
CHUNK = 20_000
"""Messages encoded and handed to the producer per step (bounds memory and progress lag)."""
_EPS_S = 1e-6
"""A message due within this is sent now (no sleep can be that short)."""
IntArray = npt.NDArray[np.int64]
Clock = Callable[[], float]
Progress = Callable[[int], None]


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the sender uses."""

    def produce(self, topic: str, value: bytes, key: bytes) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


@dataclass(frozen=True)
class Pace:
    """How fast to send: ``max``, ``speed`` (event time / wall time) or ``rate`` (tx/s)."""

    mode: str
    """``max``, ``speed`` or ``rate``."""
    value: float = 0.0
    """The speed-up factor (``speed``) or transactions per second (``rate``)."""

    def describe(self) -> str:
        if self.mode == "speed":
            return f"{self.value:g}x event time"
        if self.mode == "rate":
            return f"{self.value:g} tx/s"
        return "as fast as possible"


def parse_speed(text: str) -> Pace:
    """``max``, ``realtime`` or ``Nx`` (e.g. ``60x``: an hour of history per minute)."""
    word = text.strip().lower()
    if word == "max":
        return Pace("max")
    if word == "realtime":
        return Pace("speed", 1.0)
    try:
        factor = float(word.removesuffix("x"))
    except ValueError:
        factor = float("nan")
    if not word.endswith("x") or not np.isfinite(factor) or factor <= 0:
        msg = f"--speed {text!r}: use max, realtime or a positive factor such as 60x"
        raise ConfigError(msg)
    return Pace("speed", factor)


def rate_pace(rate: float) -> Pace:
    if not np.isfinite(rate) or rate <= 0:
        msg = f"--rate {rate:g}: use a positive number of transactions per second"
        raise ConfigError(msg)
    return Pace("rate", rate)


def parse_time_ms(text: str, flag: str) -> int:
    """Epoch ms of ``YYYY-MM-DD`` (UTC midnight) or an ISO 8601 time (naive = UTC)."""
    value = text.strip()
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
        moment = datetime.fromisoformat(value)
    except ValueError:
        msg = f"{flag} {text!r}: use a date such as 2018-07-25 or a time such as 2018-07-25T12:00"
        raise ConfigError(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Columns:
    """The columns of a canonical table the messages are built from, converted once."""

    transaction_id: npt.NDArray[np.object_]
    """Transaction ids (str)."""
    customer_id: npt.NDArray[np.object_]
    """Customer ids (str), also the message key."""
    terminal_id: npt.NDArray[np.object_]
    """Terminal ids (str)."""
    event_time_ms: IntArray
    """Event times, epoch ms."""
    amount: npt.NDArray[np.float64]
    """Amounts."""
    extras: tuple[tuple[str, npt.NDArray[np.object_]], ...]
    """Optional Transaction fields present in the table (None where missing)."""

    @classmethod
    def of(cls, table: pd.DataFrame) -> Columns:
        def text(name: str) -> npt.NDArray[np.object_]:
            return table[name].astype(str).to_numpy(dtype=object)

        extras = tuple(
            (name, table[name].astype(object).where(table[name].notna(), None).to_numpy())
            for name in OPTIONAL_FIELDS
            if name in table.columns
        )
        return cls(
            text("transaction_id"),
            text("customer_id"),
            text("terminal_id"),
            table["event_time_ms"].to_numpy(dtype=np.int64),
            table["amount"].to_numpy(dtype=np.float64),
            extras,
        )


@dataclass(frozen=True)
class ReplayPlan:
    """Every message to send, in send order, as positions into a canonical table."""

    columns: Columns
    """The table's columns (``fraudstream.features.datafile`` canonical table, event-time order)."""
    kind: npt.NDArray[np.int8]
    """``TRANSACTION`` or ``LABEL`` per message."""
    row: IntArray
    """Row of ``table`` each message is about (a label: the labelled transaction)."""
    time_ms: IntArray
    """Event time (a transaction) or label time (a label), non-decreasing."""

    def __len__(self) -> int:
        return int(self.kind.size)

    @property
    def transactions(self) -> int:
        return int(np.count_nonzero(self.kind == TRANSACTION))

    @property
    def labels(self) -> int:
        return len(self) - self.transactions

    def last_transaction(self, messages: int) -> str | None:
        """Id of the last transaction among the first ``messages`` (where to resume)."""
        hits = np.flatnonzero(self.kind[:messages] == TRANSACTION)
        return str(self.columns.transaction_id[self.row[hits[-1]]]) if hits.size else None

    def after(self, transaction_id: str) -> ReplayPlan:
        """The messages after the transaction ``transaction_id`` (a resumed replay)."""
        ids = self.columns.transaction_id
        hits = np.flatnonzero((self.kind == TRANSACTION) & (ids[self.row] == transaction_id))
        if hits.size == 0:
            msg = f"--start-after {transaction_id!r}: no such transaction in the selected data"
            raise ConfigError(msg)
        keep = slice(int(hits[0]) + 1, None)
        return ReplayPlan(self.columns, self.kind[keep], self.row[keep], self.time_ms[keep])


def build_plan(
    table: pd.DataFrame,
    label_delay_ms: int | None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> ReplayPlan:
    """Transactions with event time in ``[start, end)`` and the labels of the frauds whose
    label time (event time + delay) is in ``[start, end)``, merged by time.

    Consecutive windows therefore compose: a fraud just before ``start`` has its label sent
    in the window where it becomes known. ``label_delay_ms`` None sends no labels.
    """
    ms = table["event_time_ms"].to_numpy(dtype=np.int64)
    tx_rows = np.flatnonzero(_within(ms, start_ms, end_ms))
    label_rows = np.zeros(0, dtype=np.int64)
    if label_delay_ms is not None and "is_fraud" in table.columns:
        fraud = np.flatnonzero(table["is_fraud"].to_numpy() == 1)
        label_rows = fraud[_within(ms[fraud] + label_delay_ms, start_ms, end_ms)]
    times = np.concatenate([ms[label_rows] + (label_delay_ms or 0), ms[tx_rows]])
    kind = np.concatenate(
        [np.full(label_rows.size, LABEL, np.int8), np.full(tx_rows.size, TRANSACTION, np.int8)]
    )
    rows = np.concatenate([label_rows, tx_rows]).astype(np.int64)
    order = np.lexsort((rows, kind, times))
    return ReplayPlan(Columns.of(table), kind[order], rows[order], times[order])


def _within(ms: IntArray, start_ms: int | None, end_ms: int | None) -> npt.NDArray[np.bool_]:
    keep = np.ones(ms.size, dtype=bool)
    if start_ms is not None:
        keep &= ms >= start_ms
    if end_ms is not None:
        keep &= ms < end_ms
    return keep


def due_offsets(plan: ReplayPlan, pace: Pace) -> npt.NDArray[np.float64] | None:
    """Seconds after the start at which each message is due (None: all at once).

    ``rate`` spaces transactions ``1/rate`` apart; a label goes with the transaction after
    it, so labels never take a transaction's slot.
    """
    if pace.mode == "max" or len(plan) == 0:
        return None
    if pace.mode == "speed":
        elapsed_ms = (plan.time_ms - plan.time_ms[0]).astype(np.float64)
        offsets: npt.NDArray[np.float64] = elapsed_ms / 1000.0 / pace.value
        return offsets
    is_tx = (plan.kind == TRANSACTION).astype(np.int64)
    before = np.cumsum(is_tx) - is_tx
    slots: npt.NDArray[np.float64] = before.astype(np.float64) / pace.value
    return slots


def encode_chunk(plan: ReplayPlan, lo: int, hi: int) -> Iterator[tuple[int, bytes, bytes]]:
    """``(kind, key, value)`` of messages ``lo:hi``; keys are customer ids."""
    rows = plan.row[lo:hi]
    c = plan.columns
    ids = c.transaction_id[rows].tolist()
    customers = c.customer_id[rows].tolist()
    terminals = c.terminal_id[rows].tolist()
    ms = c.event_time_ms[rows].tolist()
    amounts = c.amount[rows].tolist()
    label_ms = plan.time_ms[lo:hi].tolist()
    extras = [(name, column[rows].tolist()) for name, column in c.extras]
    dumps = orjson.dumps
    for i, kind in enumerate(plan.kind[lo:hi].tolist()):
        key = customers[i].encode()
        if kind == LABEL:
            label = Label(ids[i], customers[i], terminals[i], ms[i], label_ms[i], True)
            yield kind, key, encode_label(label)
            continue
        doc: dict[str, Any] = {
            "transaction_id": ids[i],
            "event_time": ms[i],
            "customer_id": customers[i],
            "terminal_id": terminals[i],
            "amount": amounts[i],
        }
        for name, column in extras:
            if column[i] is not None:
                doc[name] = str(column[i])
        yield kind, key, dumps(doc)


@dataclass(frozen=True)
class SendStats:
    """What a replay sent, and how fast."""

    transactions: int
    """Transactions handed to the producer."""
    labels: int
    """Labels handed to the producer."""
    failed: int
    """Messages the broker did not acknowledge."""
    elapsed_s: float
    """Wall time from the first message to the end of the flush."""
    send_span_s: float
    """Wall time between handing over the first and the last transaction."""
    event_span_ms: int
    """Event-time span of the transactions sent."""

    @property
    def sent(self) -> int:
        return self.transactions + self.labels - self.failed

    @property
    def achieved_rate(self) -> float:
        """Transactions per second while sending (``n - 1`` gaps over the send span)."""
        if self.transactions < 2 or self.send_span_s <= 0:
            return float(self.transactions) / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (self.transactions - 1) / self.send_span_s

    @property
    def achieved_speed(self) -> float:
        """Event time replayed per second of wall time."""
        return self.event_span_ms / 1000.0 / self.send_span_s if self.send_span_s > 0 else 0.0


@dataclass
class Sender:
    """Hands a plan's messages to a producer on schedule, in bounded chunks."""

    producer: ProducerLike
    """An idempotent Kafka producer (or a fake one in tests)."""
    topic: str
    """Topic for transactions."""
    labels_topic: str
    """Topic for labels."""
    failures: Callable[[], int] = lambda: 0
    """Messages the broker refused so far (from the delivery callback)."""
    clock: Clock = time.monotonic
    """Monotonic clock the schedule is measured on."""
    sleep: Callable[[float], None] = time.sleep
    """Waits between due times."""
    flush_timeout_s: float = 120.0
    """Bound on the final flush."""
    handed_over: int = 0
    """Messages of the current plan handed to the producer so far (for resuming)."""

    def send(self, plan: ReplayPlan, pace: Pace, progress: Progress | None = None) -> SendStats:
        """Send every message when due (on a schedule fixed at the start, so waits never
        accumulate error), flush, and say what happened."""
        due = due_offsets(plan, pace)
        tx_done = np.cumsum(plan.kind == TRANSACTION)
        self.handed_over = 0
        start = self.clock()
        first_tx: float | None = None
        last_tx = start
        i = 0
        while i < len(plan):
            now = self.clock() - start
            ready = len(plan) if due is None else int(np.searchsorted(due, now + _EPS_S, "right"))
            if due is not None and ready <= i:
                self.producer.poll(0)
                self.sleep(min(float(due[i]) - now, 0.05))
                continue
            hi = min(ready, i + CHUNK)
            before = self.clock()
            self._produce(plan, i, hi)
            if tx_done[hi - 1] > (tx_done[i - 1] if i else 0):  # the chunk held transactions
                last_tx = self.clock()
                first_tx = before if first_tx is None else first_tx
            i = hi
            if progress:
                progress(int(tx_done[hi - 1]))
        unflushed = self.producer.flush(self.flush_timeout_s)
        return SendStats(
            transactions=plan.transactions,
            labels=plan.labels,
            failed=self.failures() + unflushed,
            elapsed_s=self.clock() - start,
            send_span_s=last_tx - (start if first_tx is None else first_tx),
            event_span_ms=_span(plan.time_ms[plan.kind == TRANSACTION]),
        )

    def _produce(self, plan: ReplayPlan, lo: int, hi: int) -> None:
        produce = self.producer.produce
        for position, (kind, key, value) in enumerate(encode_chunk(plan, lo, hi), start=lo + 1):
            topic = self.topic if kind == TRANSACTION else self.labels_topic
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self.producer.poll(0.05)
            self.handed_over = position
        self.producer.poll(0)


def _span(times: IntArray) -> int:
    return int(times[-1] - times[0]) if times.size else 0


class DeliveryFailures:
    """Delivery callback for a producer that reports errors only: counts and logs them."""

    def __init__(self) -> None:
        self.count = 0
        self.fatal: str | None = None

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is None:
            return
        self.count += 1
        if self.count == 1:
            logger.error("delivery failed: %s", err)

    def on_error(self, err: Any) -> None:
        if err.fatal():
            self.fatal = str(err)
        logger.warning("kafka: %s", err)


def producer_config(
    conn: KafkaConnection, pace: Pace, failures: DeliveryFailures
) -> dict[str, Any]:
    """An idempotent producer that batches hard at ``max`` pace and lingers little when
    paced (the Kafka timestamp starts serve's latency budget)."""
    flat_out = pace.mode == "max"
    return conn.to_librdkafka() | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20 if flat_out else 2,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "compression.type": "lz4" if flat_out else "none",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 262_144,
        "delivery.report.only.error": True,
        "on_delivery": failures,
        "error_cb": failures.on_error,
    }


def check_topics(producer: Any, topics: list[str], timeout_s: float = 10.0) -> None:
    """Raise a one-line error when a topic does not exist (sends would only time out)."""
    for topic in topics:
        meta = producer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            msg = f"topic {topic!r} does not exist on the broker: create it first"
            raise ConfigError(msg)


def raise_if_fatal(failures: DeliveryFailures) -> None:
    if failures.fatal:
        msg = f"the producer hit a fatal error: {failures.fatal}"
        raise FatalKafkaError(msg)


def label_delay_ms(days: float) -> int:
    if not np.isfinite(days) or days < 0:
        msg = f"--label-delay-days {days:g}: use a number of days >= 0"
        raise ConfigError(msg)
    return round(days * MS_PER_DAY)
