"""serve against secured servers: a broker that only speaks SASL/SCRAM (right credentials
decide, wrong ones fail fast with a clear error) and a Redis whose default user is off and
whose one ACL user reaches only the store's prefix with only the commands the store needs.
No password reaches serve's log or its /metrics."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream.features import rebuild as rebuild_module
from fraudstream.features.rebuild import rebuild
from fraudstream.features.redis_scripts import APPLY_LABELS, APPLY_TRANSACTIONS
from fraudstream.features.redis_store import RedisStore
from fraudstream.models.registry import Registry
from tests.infra import FRAUDSTREAM, ROOT, LocalKafka, LocalRedis
from tests.serving import ServeFactory, ServeHandle, assert_store_equals_one_application, tx_payload

pytestmark = pytest.mark.reliability

USER, SECRET = "scorer-sasl", "Kafka-Secret-5e1b9"
WRONG = "Wrong-Secret-0c47a"
REDIS_SECRET = "Redis-Secret-8f2d1"
CLIENT_COMMANDS = ("evalsha", "eval", "get", "set", "hgetall")
"""Sent by the store's client: scripts by SHA (EVAL once on NOSCRIPT), the schema check and
the store epoch (SET NX, GET), the offset marks and the rebuild record (HGETALL). Not INFO:
without it the store takes the server for a single node (``+info`` lets it detect a
cluster)."""


def store_commands() -> list[str]:
    """Every command the store and ``features rebuild`` need: the client's, and those the
    Lua scripts call (Redis checks a script's calls against the user's ACL too)."""
    sources = APPLY_TRANSACTIONS.source + APPLY_LABELS.source + rebuild_module._SEAL
    inner = {c.lower() for c in re.findall(r"redis\.call\('([A-Za-z]+)'", sources)}
    return sorted(set(CLIENT_COMMANDS) | inner)


def _sasl(bootstrap: str, password: str = SECRET) -> dict[str, str]:
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": USER,
        "sasl.password": password,
    }


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


@pytest.fixture
def sasl_serve(sasl_kafka: LocalKafka, redis_url: str, tmp_path: Path) -> Iterator[ServeFactory]:
    admin = AdminClient(_sasl(sasl_kafka.bootstrap))

    def create(stem: str = "t", partitions: int = 1) -> str:
        name = f"{stem}-{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=60)
        return name

    factory = ServeFactory(sasl_kafka.bootstrap, redis_url, create, tmp_path)
    yield factory
    factory.stop_all()


SASL_FLAGS = [
    *("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-256"),
    *("--sasl-username", USER, "--budget-ms", "60000"),
]


def _decisions(conf: dict[str, str], topic: str, expected: int, timeout_s: float = 90) -> list[Any]:
    consumer = Consumer(conf | {"group.id": f"r-{uuid.uuid4()}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out += [orjson.loads(m.value()) for m in consumer.consume(500, 0.5) if not m.error()]
    finally:
        consumer.close()
    return out


def _send(conf: dict[str, str], topic: str, df: pd.DataFrame) -> None:
    producer = Producer(conf)
    for row in df.itertuples():
        producer.produce(topic, key=str(row.customer_id).encode(), value=tx_payload(row))
    assert producer.flush(30) == 0


def _full_log(handle: ServeHandle) -> str:
    return handle.log.read_text(errors="replace")


def test_sasl_scram_right_credentials_decide_and_the_secret_stays_out_of_logs(
    sasl_kafka: LocalKafka, sasl_serve: ServeFactory, registry: Registry, history: pd.DataFrame
) -> None:
    df = history.iloc[:300]
    serve = sasl_serve(registry.root, extra=SASL_FLAGS, env={"FRAUDSTREAM_SASL_PASSWORD": SECRET})
    _send(_sasl(sasl_kafka.bootstrap), serve.input, df)
    out = _decisions(_sasl(sasl_kafka.bootstrap), serve.decisions, len(df))
    assert sorted(d["transaction_id"] for d in out) == sorted(df["transaction_id"].astype(str))
    text = _full_log(serve) + serve.metrics()
    assert SECRET not in text
    assert serve.stop() == 0
    assert SECRET not in _full_log(serve)


def _wrong_password_serve(sasl_serve: ServeFactory, registry: Registry, tmp: Path) -> str:
    password_file = tmp / "wrong-password"
    password_file.write_text(WRONG + "\n")
    extra = [*SASL_FLAGS, "--sasl-password-file", str(password_file)]
    serve = sasl_serve(registry.root, extra=extra, wait=False)
    assert serve.proc.wait(90) != 0
    return _full_log(serve)


def test_sasl_scram_wrong_password_fails_fast_without_showing_it(
    sasl_serve: ServeFactory, registry: Registry, tmp_path: Path
) -> None:
    log = _wrong_password_serve(sasl_serve, registry, tmp_path)
    assert "error:" in log
    assert WRONG not in log and SECRET not in log


def test_sasl_scram_wrong_password_error_names_authentication(
    sasl_serve: ServeFactory, registry: Registry, tmp_path: Path
) -> None:
    log = _wrong_password_serve(sasl_serve, registry, tmp_path)
    assert "Kafka authentication failed" in log, log[-2000:]


def test_rebuild_over_sasl_scram(
    sasl_kafka: LocalKafka, sasl_serve: ServeFactory, registry: Registry, history: pd.DataFrame,
    redis_url: str, tmp_path: Path,
) -> None:  # fmt: skip
    df = history.iloc[:200]
    serve = sasl_serve(registry.root, extra=SASL_FLAGS, env={"FRAUDSTREAM_SASL_PASSWORD": SECRET})
    _send(_sasl(sasl_kafka.bootstrap), serve.input, df)
    assert len(_decisions(_sasl(sasl_kafka.bootstrap), serve.decisions, len(df))) == len(df)
    assert serve.stop() == 0
    group = serve.args[serve.args.index("--group-id") + 1]
    cmd = [*FRAUDSTREAM, "features", "rebuild"]
    cmd += ["--bootstrap-servers", sasl_kafka.bootstrap, "--redis-url", redis_url]
    cmd += ["--redis-prefix", serve.prefix, "--input-topic", serve.input, "--group-id", group]
    cmd += ["--no-labels", *SASL_FLAGS[:6]]
    env = dict(os.environ) | {"FRAUDSTREAM_SASL_PASSWORD": SECRET}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "partition 0: from 0 to 200 (200 records) applied 200" in done.stdout
    wrong = tmp_path / "wrong"
    wrong.write_text(WRONG)
    cmd += ["--sasl-password-file", str(wrong)]
    env.pop("FRAUDSTREAM_SASL_PASSWORD")
    refused = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "Kafka authentication failed" in refused.stderr, refused.stderr[-2000:]
    assert WRONG not in refused.stdout + refused.stderr
    RedisStore.from_url(redis_url, prefix=serve.prefix).drop()


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[LocalRedis, redis.Redis]]:
    """A private redis-server with an ``admin`` user and the default user switched off."""
    server = LocalRedis(var=tmp_path / "acl-redis")
    server.start()
    default = redis.Redis(port=server.port)
    default.acl_setuser(
        "admin", enabled=True, passwords=["+admin-pw"], keys=["*"], commands=["+@all"]
    )
    default.acl_setuser("default", enabled=False)
    default.close()
    admin = redis.Redis(port=server.port, username="admin", password="admin-pw")
    yield server, admin
    admin.close()
    server.stop()


def _scorer(admin: redis.Redis, prefix: str) -> None:
    admin.execute_command(
        "ACL", "SETUSER", "scorer", "reset", "on", f">{REDIS_SECRET}", f"~{prefix}:*",
        "resetchannels", "-@all", *(f"+{c}" for c in store_commands()),
    )  # fmt: skip


def test_serve_and_rebuild_through_a_prefix_restricted_redis_acl_user(
    acl_redis: tuple[LocalRedis, redis.Redis],
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
) -> None:
    server, admin = acl_redis
    prefix = f"t{serve_factory.unique}"  # the prefix serve_factory gives serve
    _scorer(admin, prefix)
    url = f"redis://scorer:{REDIS_SECRET}@127.0.0.1:{server.port}/0"
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=server.port).ping()  # the default user is off
    scorer = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        scorer.set("elsewhere:key", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        scorer.get(f"other{prefix}:schema")
    with pytest.raises(redis.exceptions.NoPermissionError):
        scorer.flushall()
    scorer.close()

    df = history.iloc[:600]
    serve = serve_factory(registry.root, extra=["--budget-ms", "60000"], redis=url)
    _send({"bootstrap.servers": kafka_bootstrap}, serve.input, df)
    out = _decisions({"bootstrap.servers": kafka_bootstrap}, serve.decisions, len(df))
    assert sorted(d["transaction_id"] for d in out) == sorted(df["transaction_id"].astype(str))
    assert [d for d in out if d["degraded"]] == [], "a store call was refused"

    assert serve.stop() == 0  # a clean stop commits every decided offset

    # the store emptied (as after a restart), then rebuilt by the same restricted user
    admin.flushall()
    group = serve.args[serve.args.index("--group-id") + 1]
    store = RedisStore.from_url(url, prefix=prefix, socket_timeout_s=30)
    report = rebuild(store, {"bootstrap.servers": kafka_bootstrap}, serve.input, group, None)
    store.close()
    assert sum(r.applied for r in report.partitions) == len(df)
    assert_store_equals_one_application(url, prefix, df)

    # a refused command is logged without the password
    admin.execute_command("ACL", "SETUSER", "scorer", "-evalsha")
    serve = serve_factory(registry.root, extra=["--budget-ms", "60000"], redis=url)
    _send({"bootstrap.servers": kafka_bootstrap}, serve.input, history.iloc[600:650])
    _decisions({"bootstrap.servers": kafka_bootstrap}, serve.decisions, len(df) + 50)
    log = _full_log(serve) + serve.metrics()
    assert "NOPERM" in log or "no permissions" in log, log[-3000:]
    assert REDIS_SECRET not in log
