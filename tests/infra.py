"""Real Kafka and Redis for tests: local processes started through the ops scripts.

Used by ``tests/conftest.py`` (the shared session servers) and by reliability tests that
need servers of their own to kill and restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FRAUDSTREAM = (sys.executable, "-m", "fraudstream.stream.cli", "--plain-logs")
"""The ``fraudstream`` command as a subprocess (run it with ``cwd=ROOT``), plain logs."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reader(bootstrap: str, topic: str, committed: bool = False) -> Any:
    """A consumer of ``topic`` from its start in a group of its own, committing nothing
    (``committed``: read_committed). The caller closes it."""
    from confluent_kafka import Consumer

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if committed:
        conf["isolation.level"] = "read_committed"
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    return consumer


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def docker_available() -> bool:
    """True when a Docker engine answers (not merely a docker client on PATH)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class LocalKafka:
    """A single-node KRaft broker in its own data folder, on its own ports."""

    var: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    sasl: bool = False
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return _read_pid(self.var / "kafka.pid")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env |= {
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_VAR": str(self.var),
            "KAFKA_SASL": "1" if self.sasl else "0",
            "KAFKA_HEAP": "384m",
        }
        return env | self.env_extra

    def start(self) -> None:
        subprocess.run(
            [str(ROOT / "ops/kafka/kafka.sh"), "start"],
            env=self._env(),
            check=True,
            capture_output=True,
            timeout=180,
        )

    def stop(self) -> None:
        subprocess.run(
            [str(ROOT / "ops/kafka/kafka.sh"), "stop"],
            env=self._env(),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def kill(self) -> None:
        """SIGKILL the broker (a crash, not a clean stop)."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)


@dataclass
class LocalRedis:
    """A redis-server in its own folder on its own port."""

    var: Path
    port: int = field(default_factory=free_port)
    persist: bool = False
    acl_file: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return _read_pid(self.var / "redis.pid")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ) | {
            "REDIS_PORT": str(self.port),
            "REDIS_VAR": str(self.var),
            "REDIS_PERSIST": "1" if self.persist else "0",
        }
        if self.acl_file is not None:
            env["REDIS_ACL_FILE"] = str(self.acl_file)
        return env

    def start(self) -> None:
        subprocess.run(
            [str(ROOT / "ops/redis/redis.sh"), "start"],
            env=self._env(),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        subprocess.run(
            [str(ROOT / "ops/redis/redis.sh"), "stop"],
            env=self._env(),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def kill(self) -> None:
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)


def _wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
