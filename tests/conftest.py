"""Session-scoped real endpoints for the integration and reliability suites.

Order of preference: ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` from the environment;
else testcontainers when a Docker engine answers; else local processes started through the
ops scripts on free ports and stopped at the end of the session. Every test gets its own
topic names, consumer group ids and Redis key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra import LocalKafka, LocalRedis, docker_available


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    redis_url: str


def _containers() -> Iterator[Endpoints]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with (
        KafkaContainer("apache/kafka:4.1.0").with_kraft() as kafka,
        RedisContainer("redis:7.4") as redis,
    ):
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(6379)
        yield Endpoints(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0")


def _local(base: Path) -> Iterator[Endpoints]:
    kafka = LocalKafka(var=base / "kafka")
    redis = LocalRedis(var=base / "redis")
    redis.start()
    try:
        kafka.start()
        try:
            yield Endpoints(kafka.bootstrap, redis.url)
        finally:
            kafka.stop()
    finally:
        redis.stop()


@contextmanager
def _services_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the local broker and Redis keep their data: on tmpfs (``/dev/shm``) when there
    is one with room, else in pytest's temporary directory; ``FRAUDSTREAM_TEST_DATA_DIR``
    chooses. The latency tests measure fraudstream, not the disk under the broker: on this
    project's VM (ext4 root on a virtual disk) the broker's appends stall for 40 to 70 ms
    every few seconds (its acknowledgements to a producer at 500/s), which no process on the
    machine can hide, while on tmpfs the slowest acknowledgement stays under 20 ms."""
    chosen = os.environ.get("FRAUDSTREAM_TEST_DATA_DIR")
    shm = Path("/dev/shm")  # noqa: S108 - tmpfs, the point of this choice
    if chosen is None and shm.is_dir() and os.access(shm, os.W_OK):
        if shutil.disk_usage(shm).free > 4 << 30:
            chosen = str(shm)
    if chosen is None:
        yield tmp_path_factory.mktemp("services")
        return
    base = Path(tempfile.mkdtemp(prefix="fraudstream-test-", dir=chosen))
    try:
        yield base
    finally:  # tmpfs holds memory: give it back
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("REDIS_URL")
    if bootstrap and redis_url:
        yield Endpoints(bootstrap, redis_url)
    elif docker_available() and os.environ.get("FRAUDSTREAM_TEST_NO_DOCKER") != "1":
        yield from _containers()
    else:
        with _services_dir(tmp_path_factory) as base:
            yield from _local(base)


@pytest.fixture(scope="session")
def kafka_bootstrap(endpoints: Endpoints) -> str:
    return endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(endpoints: Endpoints) -> str:
    return endpoints.redis_url


@pytest.fixture
def unique() -> str:
    """A short unique suffix for names this test creates."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def redis_prefix(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
def group_id(unique: str) -> str:
    return f"g-{unique}"


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics; delete them when the test ends."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    made: list[str] = []

    def create(stem: str = "t", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"{stem}-{uuid.uuid4().hex[:12]}"
        fut = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=30,
        )[name]
        fut.result(timeout=60)
        made.append(name)
        return name

    yield create
    if made:
        for fut in admin.delete_topics(made, operation_timeout=30).values():
            try:
                fut.result(timeout=60)
            except Exception:  # noqa: S110 - best-effort clean-up
                pass


# The ``gpu`` marker: such tests run on a CUDA device that really works and are skipped,
# with the reason, everywhere else (before any of their fixtures is built).
GPU_DRY_RUN = "FRAUDSTREAM_TEST_GPU_AS"
"""Set to ``cpu`` to run the gpu tests' own logic without a GPU: the "cuda" side is then the
cuda code path on the CPU (see tests/gpu/conftest.py). For checking those tests, not the GPU."""
_cuda: list[tuple[str | None, str]] = []


def _usable_cuda() -> tuple[str | None, str]:
    """(device, "") when CUDA works (probed once: XGBoost trains and predicts there from a
    CuPy array), else (None, why not)."""
    if not _cuda:
        from fraudstream.models.device import choose_device
        from fraudstream.models.exceptions import DeviceUnavailable

        if os.environ.get(GPU_DRY_RUN) == "cpu":
            _cuda.append(("cpu", ""))
        else:
            try:
                _cuda.append((choose_device("cuda", need_cupy=True)[0], ""))
            except DeviceUnavailable as exc:
                _cuda.append((None, f"no usable CUDA device: {exc}"))
    return _cuda[0]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        device, why = _usable_cuda()
        if device is None:
            pytest.skip(why)


@pytest.fixture(scope="session")
def cuda_device() -> str:
    """The CUDA device of the gpu tests (``cpu`` in a dry run)."""
    device, why = _usable_cuda()
    if device is None:
        pytest.skip(why)
    return device


# Fixtures of tests that run ``fraudstream serve`` (integration and reliability suites).
from tests.serving import history, registry, serve_factory, trained  # noqa: E402, F401
