"""Redis for the features integration tests: ``REDIS_URL`` if set, else a private
redis-server on a free port for the session; plus private servers tests may kill, and
``make_store``: one test run against the in-process store, a single Redis and a Redis
Cluster."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from fraudstream.features.local_store import LocalStore
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.store import FeatureStore
from tests.cluster_infra import redis_cluster  # noqa: F401 (fixture, started on request)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process this test session started."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def start_redis(workdir: Path, *extra: str) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(workdir), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(proc, port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    pytest.fail(f"redis-server did not start on port {port}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Private redis-servers (to stop, or to configure), stopped at the end of the test."""
    started: list[RedisServer] = []

    def start(*extra: str) -> RedisServer:
        server = start_redis(tmp_path, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def store_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_store(redis_url: str, store_prefix: str) -> Iterator[RedisStore]:
    store = RedisStore.from_url(redis_url, prefix=store_prefix)
    yield store
    store.drop()
    store.close()


@pytest.fixture
def raw_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=["memory", "redis", "cluster", "local", "local-cluster"])
def make_store(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Callable[..., Any]]:
    """``make(**limits)``: a fresh store of each kind (limits: max_customer_records,
    max_terminal_records, and chunk_size for Redis, 7 unless given: several calls a batch;
    "local" is ``LocalStore``, customers held in the test's process, on a single Redis
    and on a Redis Cluster)."""
    made: list[RedisStore | LocalStore] = []

    def make(**limits: int) -> FeatureStore:
        if request.param == "memory":
            limits.pop("chunk_size", None)
            return MemoryStore(**limits)
        if request.param.startswith("local"):
            limits.pop("chunk_size", None)
            url = redis_url
            if request.param == "local-cluster":
                url = request.getfixturevalue("redis_cluster").url
            local = LocalStore.from_url(url, prefix=f"t{uuid.uuid4().hex[:12]}", **limits)
            made.append(local)
            return local
        limits.setdefault("chunk_size", 7)
        url = redis_url
        if request.param == "cluster":
            url = request.getfixturevalue("redis_cluster").url
        store = RedisStore.from_url(url, prefix=f"t{uuid.uuid4().hex[:12]}", **limits)
        made.append(store)
        return store

    yield make
    for store in made:
        store.drop()
        store.close()
