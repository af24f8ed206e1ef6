"""Labels through the worker into the Redis store: terminal risk features of later
transactions equal the offline computation; repeats count once; malformed labels land in
the dead-letter topic byte for byte, with their reasons."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson
import pandas as pd
import pytest

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.offline import compute_features
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.schema import Label, encode_label
from fraudstream.features.simulator import SimulatorConfig, simulate
from tests.integration.labels.harness import (
    LabelTopics,
    Message,
    Worker,
    consume,
    expected_labels,
    produce,
    store_labels,
    wait_for,
)

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
COUNTS = [i for i, name in enumerate(FEATURE_NAMES) if "_nb_tx_" in name]
RATIOS = [i for i, name in enumerate(FEATURE_NAMES) if "_avg_" in name or "_risk_" in name]
RISKS = [i for i, name in enumerate(FEATURE_NAMES) if "terminal_risk" in name]
AGES = [i for i, name in enumerate(FEATURE_NAMES) if "_fraud_age_" in name]


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return simulate(SimulatorConfig(n_customers=150, n_terminals=80, n_days=24, seed=5))


def _label(row: pd.Series, is_fraud: bool) -> Label:
    ms = int(row["event_time_ms"])
    return Label(
        str(row["transaction_id"]), str(row["customer_id"]), str(row["terminal_id"]), ms,
        ms + 7 * DAY_MS, is_fraud,
    )  # fmt: skip


def _message(label: Label) -> Message:
    return label.transaction_id.encode(), encode_label(label), None


def _apply(store: RedisStore, df: pd.DataFrame, size: int = 500) -> np.ndarray:
    rows = []
    for start in range(0, len(df), size):
        part = df.iloc[start : start + size]
        batch = TransactionBatch.from_columns(
            part["transaction_id"].astype(str).tolist(),
            part["customer_id"].astype(str).tolist(),
            part["terminal_id"].astype(str).tolist(),
            part["event_time_ms"].to_numpy(),
            part["amount"].to_numpy(),
        )
        rows.append(store.apply(batch))
    return np.vstack(rows)


def _received(worker: Worker, n: int) -> Callable[[], bool]:
    return lambda: worker.metric("fraudstream_labels_received_total") == n


def test_labels_reach_terminal_features_exactly_as_offline(
    dataset: pd.DataFrame,
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    df = dataset.sort_values("event_time_ms", kind="stable").reset_index(drop=True)
    cut = int(df["event_time_ms"].iloc[0]) + 14 * DAY_MS
    later = df.index[df["event_time_ms"] >= cut]
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        _apply(store, df.iloc[: later[0]])
        frauds = [_label(r, True) for _, r in df[df["is_fraud"] == 1].iterrows()]
        genuine = [_label(r, False) for _, r in df[df["is_fraud"] == 0].iloc[::7].iterrows()]
        flipped = [Label(*vars_of(x)[:5], is_fraud=False) for x in frauds[:10]]
        stream = frauds + genuine + frauds[:40] + flipped  # repeats come after the originals
        worker = start_worker()
        produce(kafka_bootstrap, label_topics.labels, map(_message, stream))
        wait_for(_received(worker, len(stream)), 60, f"{len(stream)} labels read")
        assert worker.metric("fraudstream_labels_applied_total") == len(frauds) + len(genuine)
        triples = [(x.terminal_id, x.transaction_id, x.is_fraud) for x in stream]
        assert store_labels(redis_url, redis_prefix) == expected_labels(triples)

        online = _apply(store, df.iloc[later[0] :])
    finally:
        store.drop()
        store.close()
    offline = compute_features(df)[later]
    assert np.array_equal(online[:, COUNTS], offline[:, COUNTS])
    np.testing.assert_allclose(online[:, RATIOS], offline[:, RATIOS], rtol=1e-9, atol=0)
    assert (online[:, RISKS] > 0).sum() > 500, "the labels must move the terminal risks"
    assert np.array_equal(online[:, AGES], offline[:, AGES], equal_nan=True)
    assert np.isfinite(online[:, AGES]).sum() > 500, "the labels must give fraud ages"


def vars_of(label: Label) -> tuple[str, str, str, int, int, bool]:
    return (
        label.transaction_id, label.customer_id, label.terminal_id, label.event_time_ms,
        label.label_time_ms, label.is_fraud,
    )  # fmt: skip


def test_a_label_delivered_twice_counts_once(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    t0 = 1_522_540_800_000
    fraud = Label("a", "c1", "T", t0, t0 + 7 * DAY_MS, True)
    genuine = Label("b", "c2", "T", t0 + 60_000, t0 + 7 * DAY_MS, False)
    stream = [fraud, genuine, fraud, Label(*vars_of(fraud)[:5], is_fraud=False), genuine]
    worker = start_worker()
    produce(kafka_bootstrap, label_topics.labels, map(_message, stream))
    wait_for(_received(worker, 5), 60, "5 labels read")
    assert worker.metric("fraudstream_labels_applied_total") == 2
    _assert_consumer_read_all(worker, label_topics.labels, 5)
    assert store_labels(redis_url, redis_prefix) == {"T": ({"a", "b"}, {"a"})}
    store = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        _apply(store, pd.DataFrame(
            {
                "transaction_id": ["a", "b", "probe"],
                "customer_id": ["c1", "c2", "c3"],
                "terminal_id": ["T", "T", "T"],
                "event_time_ms": [t0, t0 + 60_000, t0 + 7 * DAY_MS + 3_600_000],
                "amount": [10.0, 20.0, 30.0],
            }
        ))  # fmt: skip
        probe = _apply(store, pd.DataFrame(
            {
                "transaction_id": ["probe"], "customer_id": ["c3"], "terminal_id": ["T"],
                "event_time_ms": [t0 + 7 * DAY_MS + 3_600_000], "amount": [30.0],
            }
        ))[0]  # fmt: skip
    finally:
        store.drop()
        store.close()
    assert probe[FEATURE_NAMES.index("terminal_nb_tx_1d")] == 2
    assert probe[FEATURE_NAMES.index("terminal_risk_1d")] == 0.5


def _assert_consumer_read_all(worker: Worker, topic: str, n: int) -> None:
    """``/consumer`` shows every partition of ``topic`` fetched, its ``n`` messages read."""
    state = orjson.loads(worker.consumer())
    assert state["flow_active"] is True
    parts = [p for p in state["partitions"] if p["topic"] == topic]
    assert sorted(p["partition"] for p in parts) == [0, 1]
    assert all(p["fetching"] and not p["paused"] and not p["back_pressure"] for p in parts)
    assert sum(p["read_offset"] + 1 for p in parts if p["read_offset"] is not None) == n
    assert sum(p["highwater"] for p in parts) == n
    assert sum(p["position"] for p in parts) == n


BAD: list[bytes | None] = [
    b"not json",
    b"",
    None,
    b"[1, 2, 3]",
    b'{"customer_id": "c", "terminal_id": "t", "event_time": 1522540800000, '
    b'"label_time": 1522540800000, "is_fraud": true}',
    b'{"transaction_id": "x", "customer_id": "c", "terminal_id": "t", '
    b'"event_time": 1522540800000, "label_time": 1522540800000, "is_fraud": "yes"}',
    b'{"transaction_id": "x", "customer_id": "c", "terminal_id": "t", '
    b'"event_time": "yesterday", "label_time": 1522540800000, "is_fraud": true}',
    b'{"transaction_id": "x", "customer_id": "c", "terminal_id": "t", '
    b'"event_time": NaN, "label_time": 1522540800000, "is_fraud": true}',
    b"\xff\xfe{\x00}",
    b"[" * 2000 + b"]" * 2000,
    b'{"transaction_id": "' + b"x" * 70_000 + b'"}',
    b'{"transaction_id": [5], "customer_id": "c", "terminal_id": "t", '
    b'"event_time": 1522540800000, "label_time": 1522540800000, "is_fraud": false}',
    b'{"transaction_id": "", "customer_id": "c", "terminal_id": "t", '
    b'"event_time": 1522540800000, "label_time": 1522540800000, "is_fraud": false}',
]


def test_malformed_labels_land_in_the_dead_letter_topic_byte_identical(
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
) -> None:
    t0 = 1_522_540_800_000
    good = [Label(f"ok{i}", "c", "T", t0 + i, t0 + DAY_MS, i % 2 == 0) for i in range(5)]
    messages: list[Message] = []
    for i, value in enumerate(BAD):
        messages.append((b"bad-%d" % i, value, [("origin", b"%d" % i), ("empty", b"")]))
        if i < len(good):
            messages.append(_message(good[i]))
    worker = start_worker(via_cli=False)  # the entry point that works without the CLI
    produce(kafka_bootstrap, label_topics.labels, messages)
    wait_for(_received(worker, len(good)), 60, "the valid labels")
    letters = {m.key(): m for m in consume(kafka_bootstrap, label_topics.dlq, len(BAD))}
    assert set(letters) == {b"bad-%d" % i for i in range(len(BAD))}
    for i, value in enumerate(BAD):
        letter = letters[b"bad-%d" % i]
        assert letter.value() == value, f"payload {i} changed in the dead-letter topic"
        headers = letter.headers()
        assert headers[:2] == [("origin", b"%d" % i), ("empty", b"")]
        named = dict(headers[2:])
        assert named["fraudstream.error.class"] == b"InvalidLabel"
        assert named["fraudstream.error.code"] and named["fraudstream.error.reason"]
        assert named["fraudstream.source.topic"] == label_topics.labels.encode()
        assert int(named["fraudstream.source.offset"]) >= 0
    total = sum(
        worker.metric("fraudstream_labels_dead_letters_total", code=code.decode())
        for code in {dict(m.headers())["fraudstream.error.code"] for m in letters.values()}
    )
    assert total == len(BAD)
