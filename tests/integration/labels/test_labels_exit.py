"""A label worker that cannot go on stops with a non-zero status and one line naming the
cause, for a supervisor to restart it, and loses nothing: a worker without the compression
codecs refuses to start; one whose fetch fails on a compressed batch (the start's check
skipped) or whose labels agent crashes exits, and a sound worker started after it stores
every label. The faults are injected by ``tests.integration.labels.faulty_worker``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from fraudstream.features.schema import Label, encode_label
from tests.integration.labels.harness import (
    LabelTopics,
    Worker,
    expected_labels,
    store_labels,
    wait_for,
)

pytestmark = pytest.mark.integration

FAULTY = "tests.integration.labels.faulty_worker"
T0 = 1_522_540_800_000
N = 40


def _labels() -> list[Label]:
    return [
        Label(f"tx{i}", f"c{i % 5}", f"T{i % 3}", T0 + i, T0 + 86_400_000 + i, i % 4 == 0)
        for i in range(N)
    ]


def _error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("error:")]


def test_a_worker_without_the_codecs_refuses_to_start_with_one_line(
    start_worker: Callable[..., Worker],
) -> None:
    with pytest.raises(AssertionError, match=r"label worker exited 2: ") as failed:
        start_worker(module=FAULTY, env={"FAULT": "no-codecs"})
    log = str(failed.value).split("label worker exited 2: ", 1)[1]
    assert _error_lines(log) == [log.strip().splitlines()[-1]]
    line = _error_lines(log)[0]
    assert line.startswith("error: cannot decode snappy, lz4, zstd-compressed Kafka messages")
    assert "cramjam" in line
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("fault", "codec", "cause"),
    [
        (
            "no-codecs-unchecked", "lz4",
            "UnsupportedCodecError: Libraries for lz4 compression codec not found (a producer "
            "compresses with a codec this installation cannot decode",
        ),
        ("agent", "none", "RuntimeError: injected failure on a batch of"),
    ],
)  # fmt: skip
def test_a_worker_that_cannot_go_on_exits_with_one_line_and_loses_nothing(
    fault: str,
    codec: str,
    cause: str,
    start_worker: Callable[..., Worker],
    label_topics: LabelTopics,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    faulty = start_worker(module=FAULTY, env={"FAULT": fault})
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "compression.type": codec, "linger.ms": 20}
    )
    labels = _labels()
    for i, label in enumerate(labels):
        producer.produce(label_topics.labels, value=encode_label(label), partition=i % 2)
    assert producer.flush(30) == 0
    assert faulty.proc is not None
    try:
        status = faulty.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {fault} worker did not stop: {faulty.tail()}")
    log = faulty.tail(200_000)
    assert status == 2, log[-3000:]
    assert _error_lines(log) == [log.strip().splitlines()[-1]], log[-3000:]
    line = _error_lines(log)[0]
    assert line.startswith(f"error: label worker stopped: {cause}"), line
    assert line.endswith("read again once the worker is restarted"), line
    assert store_labels(redis_url, redis_prefix) == {}

    sound = start_worker()
    wait_for(
        lambda: sound.metric("fraudstream_labels_received_total") == N, 60,
        f"{N} labels read by a sound worker", detail=sound.tail,
    )  # fmt: skip
    triples = [(x.terminal_id, x.transaction_id, x.is_fraud) for x in labels]
    assert store_labels(redis_url, redis_prefix) == expected_labels(triples)
