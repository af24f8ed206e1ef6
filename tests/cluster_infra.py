"""A real local Redis Cluster for tests: three masters on free ports under a temp dir,
joined with ``redis-cli --cluster create``; session-scoped, started only when requested."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(taken: list[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 30_000)
        if port not in taken and _bindable(port) and _bindable(port + 10_000):
            return port


@dataclass
class LocalCluster:
    """The nodes of a cluster this session started."""

    ports: list[int]
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)


def _wait(condition: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except (OSError, redis.RedisError):
            pass
        time.sleep(0.1)
    pytest.fail(f"redis cluster: {what} within {timeout_s} s")


def start_cluster(workdir: Path, masters: int = 3) -> LocalCluster:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.fail("redis-server and redis-cli are needed (apt-get install redis-server)")
    ports: list[int] = []
    for _ in range(masters):
        ports.append(_free_port(ports))
    procs = []
    for port in ports:
        node_dir = workdir / str(port)
        node_dir.mkdir()
        cmd = [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--cluster-enabled",
            "yes",
            "--dir",
            str(node_dir),
            "--cluster-config-file",
            str(node_dir / "nodes.conf"),
        ]
        log = (node_dir / "redis.log").open("wb")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    cluster = LocalCluster(ports, procs)
    try:
        for port in ports:
            _wait(lambda p=port: redis.Redis(host="127.0.0.1", port=p).ping(), f"node {port} up")
        create = [
            cli,
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        subprocess.run(create, check=True, capture_output=True, timeout=30)
        for port in ports:
            _wait(
                lambda p=port: (
                    redis.Redis(host="127.0.0.1", port=p).cluster("info")["cluster_state"] == "ok"
                ),
                f"cluster_state:ok on {port}",
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()
