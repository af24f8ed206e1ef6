"""Replay without a broker: the send plan, label timing, pacing on a fake clock, encoding."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson
import pytest

from fraudstream.features.exceptions import ConfigError
from fraudstream.features.schema import (
    Transaction,
    decode_label,
    decode_transactions,
    encode_transaction,
)
from fraudstream.stream.history.replay import (
    LABEL,
    TRANSACTION,
    Pace,
    Sender,
    build_plan,
    due_offsets,
    encode_chunk,
    parse_speed,
    parse_time_ms,
)
from tests.unit.history.history_data import DAY_MS, T0, table


@pytest.mark.parametrize(
    ("text", "pace"),
    [("max", Pace("max")), ("realtime", Pace("speed", 1.0)), ("60x", Pace("speed", 60.0))],
)
def test_parse_speed(text: str, pace: Pace) -> None:
    assert parse_speed(text) == pace


@pytest.mark.parametrize("text", ["fast", "60", "0x", "-2x", "nanx", "x"])
def test_parse_speed_rejects_with_the_flag_named(text: str) -> None:
    with pytest.raises(ConfigError, match="--speed"):
        parse_speed(text)


def test_parse_time_accepts_dates_and_times() -> None:
    assert parse_time_ms("2018-04-01", "--from") == T0
    assert parse_time_ms("2018-04-01T06:00:00", "--from") == T0 + 6 * 3_600_000
    assert parse_time_ms("2018-04-01T08:00:00+02:00", "--to") == T0 + 6 * 3_600_000
    with pytest.raises(ConfigError, match="--to 'tomorrow'"):
        parse_time_ms("tomorrow", "--to")


def test_each_label_follows_its_transaction_at_event_time_plus_delay() -> None:
    df = table(400, 20 * DAY_MS, fraud_every=7)
    delay = 3 * DAY_MS
    plan = build_plan(df, delay)
    assert plan.transactions == 400
    assert plan.labels == int(df["is_fraud"].sum()) == 58
    assert (np.diff(plan.time_ms) >= 0).all()
    position = {}
    for i, (kind, row) in enumerate(zip(plan.kind, plan.row, strict=True)):
        if kind == TRANSACTION:
            position[row] = i
            assert plan.time_ms[i] == df["event_time_ms"].iat[row]
        else:
            assert df["is_fraud"].iat[row] == 1
            assert row in position  # its transaction went first
            assert plan.time_ms[i] == df["event_time_ms"].iat[row] + delay
            # every transaction before it is not later than its label time, every one
            # after it is later or equal (a label sorts before a same-instant transaction)
            before = plan.time_ms[:i][plan.kind[:i] == TRANSACTION]
            after = plan.time_ms[i + 1 :][plan.kind[i + 1 :] == TRANSACTION]
            assert (before <= plan.time_ms[i]).all() and (after >= plan.time_ms[i]).all()
    labelled = sorted(plan.row[plan.kind == LABEL].tolist())
    assert labelled == np.flatnonzero(df["is_fraud"].to_numpy()).tolist()


def test_label_sorts_before_a_transaction_of_the_same_instant() -> None:
    df = table(3, 1, fraud_every=0)
    df["event_time_ms"] = [T0, T0 + DAY_MS, T0 + DAY_MS]
    df.loc[0, "is_fraud"] = 1
    plan = build_plan(df, DAY_MS)
    assert plan.kind.tolist() == [TRANSACTION, LABEL, TRANSACTION, TRANSACTION]
    assert plan.row.tolist() == [0, 0, 1, 2]


def test_window_selects_transactions_by_event_time_and_labels_by_label_time() -> None:
    df = table(300, 10 * DAY_MS, fraud_every=5)
    ms = df["event_time_ms"].to_numpy()
    start, end = T0 + 4 * DAY_MS, T0 + 8 * DAY_MS
    plan = build_plan(df, 2 * DAY_MS, start, end)
    tx = plan.row[plan.kind == TRANSACTION]
    assert tx.tolist() == np.flatnonzero((ms >= start) & (ms < end)).tolist()
    fraud = df["is_fraud"].to_numpy() == 1
    due = ms + 2 * DAY_MS
    expected = np.flatnonzero(fraud & (due >= start) & (due < end))
    assert sorted(plan.row[plan.kind == LABEL].tolist()) == expected.tolist()
    assert (ms[expected] < start).any()  # labels of frauds before the window are in it


def test_consecutive_windows_send_each_message_once() -> None:
    df = table(300, 10 * DAY_MS, fraud_every=5)
    cut = T0 + 5 * DAY_MS
    whole = build_plan(df, 2 * DAY_MS)
    first, second = build_plan(df, 2 * DAY_MS, None, cut), build_plan(df, 2 * DAY_MS, cut)
    joined = list(zip(first.kind, first.row, strict=True)) + list(
        zip(second.kind, second.row, strict=True)
    )
    assert joined == list(zip(whole.kind, whole.row, strict=True))


def test_no_labels_without_a_fraud_column_or_a_delay() -> None:
    df = table(50, DAY_MS, fraud_every=3)
    assert build_plan(df, None).labels == 0
    assert build_plan(df.drop(columns="is_fraud"), DAY_MS).labels == 0


def test_start_after_resumes_after_that_transaction() -> None:
    df = table(100, 20 * DAY_MS, fraud_every=4)
    plan = build_plan(df, DAY_MS)
    resumed = plan.after("tx000049")
    cut = int(np.flatnonzero((plan.kind == TRANSACTION) & (plan.row == 49))[0])
    assert resumed.kind.tolist() == plan.kind[cut + 1 :].tolist()
    assert resumed.row.tolist() == plan.row[cut + 1 :].tolist()
    with pytest.raises(ConfigError, match="--start-after 'nope'"):
        plan.after("nope")


def test_rate_spaces_transactions_and_labels_ride_with_the_next_one() -> None:
    df = table(6, 1, fraud_every=0)
    df["event_time_ms"] = T0 + np.array([0, 1, 2, 3, 4, 5]) * DAY_MS
    df.loc[1, "is_fraud"] = 1
    plan = build_plan(df, 2 * DAY_MS)  # label of row 1 at day 3, before transaction 3
    assert plan.kind.tolist() == [1, 1, 1, 0, 1, 1, 1]
    due = due_offsets(plan, Pace("rate", 4.0))
    assert due is not None
    assert due.tolist() == [0.0, 0.25, 0.5, 0.75, 0.75, 1.0, 1.25]
    speed = due_offsets(plan, Pace("speed", 86_400.0))
    assert speed is not None
    assert speed.tolist() == [0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0]
    assert due_offsets(plan, Pace("max")) is None


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@dataclass
class FakeProducer:
    clock: FakeClock
    sent: list[tuple[str, bytes, bytes, float]] = field(default_factory=list)
    flushed: int = 0

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key, self.clock.now))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.flushed += 1
        return 0


def test_sender_hands_each_message_over_at_its_due_time() -> None:
    df = table(500, 10 * DAY_MS, fraud_every=9)
    plan = build_plan(df, 2 * DAY_MS)
    clock = FakeClock()
    producer = FakeProducer(clock)
    done: list[int] = []
    stats = Sender(producer, "tx", "lab", clock=clock, sleep=clock.sleep).send(
        plan, Pace("rate", 200.0), done.append
    )
    due = due_offsets(plan, Pace("rate", 200.0))
    assert due is not None
    at = np.array([s[3] for s in producer.sent]) - 100.0
    np.testing.assert_allclose(at, due, atol=1e-9)
    assert [s[0] for s in producer.sent].count("tx") == 500
    assert [s[0] for s in producer.sent].count("lab") == plan.labels == 56
    assert stats.transactions == 500 and stats.labels == 56 and stats.failed == 0
    assert stats.achieved_rate == pytest.approx(200.0)
    assert done[-1] == 500 and producer.flushed == 1


def test_sender_at_speed_keeps_event_time_gaps_scaled() -> None:
    df = table(200, DAY_MS, fraud_every=0)
    plan = build_plan(df, None)
    clock = FakeClock()
    producer = FakeProducer(clock)
    stats = Sender(producer, "tx", "lab", clock=clock, sleep=clock.sleep).send(
        plan, Pace("speed", 3600.0)
    )
    at = np.array([s[3] for s in producer.sent])
    ms = df["event_time_ms"].to_numpy()
    np.testing.assert_allclose(at - at[0], (ms - ms[0]) / 1000 / 3600, atol=1e-9)
    assert stats.achieved_speed == pytest.approx(3600.0)


def test_encoded_messages_decode_to_the_table() -> None:
    df = table(120, 10 * DAY_MS, fraud_every=6)
    df.loc[0, "transaction_id"] = 'quote"and\\slash é'
    plan = build_plan(df, DAY_MS)
    messages = list(encode_chunk(plan, 0, len(plan)))
    tx_values = [v for kind, _k, v in messages if kind == TRANSACTION]
    decoded = decode_transactions(tx_values, now_ms=T0 + 20 * DAY_MS)
    assert decoded.errors == []
    rows = plan.row[plan.kind == TRANSACTION]
    assert decoded.batch.transaction_id == df["transaction_id"].to_numpy()[rows].tolist()
    assert decoded.batch.event_time_ms.tolist() == df["event_time_ms"].to_numpy()[rows].tolist()
    assert decoded.batch.amount.tolist() == df["amount"].to_numpy()[rows].tolist()
    first = df.iloc[int(rows[0])]
    expected = Transaction(
        first.transaction_id,
        int(first.event_time_ms),
        first.customer_id,
        first.terminal_id,
        float(first.amount),
    )
    assert tx_values[0] == encode_transaction(expected)
    keys = [k for _kind, k, _v in messages]
    assert keys == [c.encode() for c in df["customer_id"].to_numpy()[plan.row]]
    labels = [decode_label(v) for kind, _k, v in messages if kind == LABEL]
    assert len(labels) == 20
    for label in labels:
        assert label.is_fraud and label.label_time_ms == label.event_time_ms + DAY_MS


def test_optional_fields_are_sent_when_present() -> None:
    df = table(3, DAY_MS).assign(currency=["EUR", None, "USD"])
    plan = build_plan(df, None)
    values = [v for _kind, _k, v in encode_chunk(plan, 0, 3)]
    assert b'"currency":"EUR"' in values[0] and b"currency" not in values[1]


def test_an_interrupted_send_says_where_to_resume() -> None:
    df = table(50, 10 * DAY_MS, fraud_every=5)
    plan = build_plan(df, DAY_MS)
    clock = FakeClock()

    class Interrupting(FakeProducer):
        def produce(self, topic: str, value: bytes, key: bytes) -> None:
            if len(self.sent) == 30:
                raise KeyboardInterrupt
            super().produce(topic, value, key)

    producer = Interrupting(clock)
    sender = Sender(producer, "tx", "lab", clock=clock, sleep=clock.sleep)
    with pytest.raises(KeyboardInterrupt):
        sender.send(plan, Pace("max"))
    assert sender.handed_over == 30
    sent = [orjson.loads(v)["transaction_id"] for t, v, _k, _at in producer.sent if t == "tx"]
    last = plan.last_transaction(30)
    assert last == sent[-1]
    rest = plan.after(last)
    resumed = [
        orjson.loads(v)["transaction_id"]
        for k, _key, v in encode_chunk(rest, 0, len(rest))
        if k == TRANSACTION
    ]
    assert sent + resumed == df["transaction_id"].tolist()
    assert plan.last_transaction(0) is None
