"""The label worker against a broker with a SASL/SCRAM listener: the right credentials work
and the password never reaches the logs; wrong ones stop the start at once with a clear
authentication error (exit 2) that does not show the password either."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream.features.schema import Label, encode_label
from tests.infra import FRAUDSTREAM, LocalKafka
from tests.integration.labels.harness import Worker, count_labels, free_port, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER, SECRET = "labels-user", "Sc4m-only-in-env-9f2"
WRONG = "not-the-password-77x"


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = LocalKafka(
        var=tmp_path_factory.mktemp("sasl-kafka"),
        sasl=True,
        env_extra={"KAFKA_SASL_USER": USER, "KAFKA_SASL_PASSWORD": SECRET},
    )
    kafka.start()
    yield kafka
    kafka.stop()


def _client_conf(bootstrap: str) -> dict[str, str]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": USER,
        "sasl.password": SECRET,
    }


def _args(bootstrap: str, redis_url: str, prefix: str, topics: list[str]) -> list[str]:
    return [
        *("--bootstrap-servers", bootstrap, "--redis-url", redis_url, "--redis-prefix", prefix),
        *("--group-id", f"g-{uuid.uuid4().hex[:8]}", "--labels-topic", topics[0]),
        *("--labels-dlq-topic", topics[1], "--decisions-topic", topics[2]),
        *("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-256"),
        *("--sasl-username", USER),
    ]


def test_right_credentials_apply_labels_and_the_secret_stays_out_of_the_logs(
    sasl_kafka: LocalKafka, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    conf = _client_conf(sasl_kafka.bootstrap)
    topics = [f"{stem}-{uuid.uuid4().hex[:8]}" for stem in ("labels", "dlq", "decisions")]
    admin = AdminClient(conf)
    for fut in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        fut.result(timeout=30)
    producer = Producer(conf)
    t0 = 1_522_540_800_000
    for i in range(40):
        label = Label(f"s{i}", "c", f"T{i % 4}", t0 + i, t0 + 1, i % 2 == 0)
        producer.produce(topics[0], value=encode_label(label))
    for i in range(10):  # decisions reach the KPIs through their own librdkafka consumer
        decision = {"transaction_id": f"s{i}", "event_time": t0 + i, "amount": 2.0}
        producer.produce(topics[2], value=orjson.dumps({**decision, "decision": "approve"}))
    assert producer.flush(30) == 0

    args = _args(sasl_kafka.bootstrap, redis_url, redis_prefix, topics)
    env = worker_env(kpi_partitions=1, data_dir=tmp_path / "faust", sasl_password=SECRET)
    worker = Worker(args, env, tmp_path).start()
    try:
        wait_for(lambda: count_labels(redis_url, redis_prefix) == 40, 60, "40 labels over SASL")
        wait_for(
            lambda: sum(sum(h["decisions"].values()) for h in worker.kpis()) == 10,
            60,
            "10 decisions over SASL",
        )
        metrics = worker.get("/metrics").decode() + worker.get("/kpis").decode()
    finally:
        assert worker.stop() == 0
    assert SECRET not in worker.log.read_text() + metrics


def test_wrong_credentials_fail_fast_with_a_clear_error(
    sasl_kafka: LocalKafka, redis_url: str, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(WRONG + "\n")
    args = _args(sasl_kafka.bootstrap, redis_url, "unused", ["l", "d", "c"])
    args += ["--sasl-password-file", str(password_file), "--web-port", str(free_port())]
    cmd = [*FRAUDSTREAM, "features", "run", *args]
    done = subprocess.run(
        cmd, env=worker_env(connect_timeout_s=20), capture_output=True, timeout=60, text=True
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "Kafka authentication failed" in done.stderr
    assert f"user {USER!r} with SCRAM-SHA-256" in done.stderr
    assert WRONG not in output and SECRET not in output
