"""`make up` / `make down` and the broker-unreachable error, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.infra import ROOT, free_port, port_open

pytestmark = pytest.mark.integration


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive; reap check through /proc
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_make_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    kport, cport, rport = free_port(), free_port(), free_port()
    env = dict(os.environ) | {
        "KAFKA_PORT": str(kport),
        "KAFKA_CONTROLLER_PORT": str(cport),
        "REDIS_PORT": str(rport),
        "KAFKA_VAR": str(tmp_path / "kafka"),
        "REDIS_VAR": str(tmp_path / "redis"),
        "KAFKA_HEAP": "384m",
    }
    first = _make("up", env)
    assert first.returncode == 0, first.stdout + first.stderr
    kafka_pid = int((tmp_path / "kafka/kafka.pid").read_text())
    redis_pid = int((tmp_path / "redis/redis.pid").read_text())
    assert port_open(kport) and port_open(rport)
    second = _make("up", env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already running" in second.stdout
    assert int((tmp_path / "kafka/kafka.pid").read_text()) == kafka_pid

    down = _make("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.monotonic() + 10
    while (_alive(kafka_pid) or _alive(redis_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(kafka_pid)
    assert not _alive(redis_pid)
    assert not port_open(kport) and not port_open(cport) and not port_open(rport)
    again = _make("down", env)
    assert again.returncode == 0, again.stdout + again.stderr


def test_unreachable_broker_is_one_clear_line_within_timeout() -> None:
    port = free_port()
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudstream.stream.cli",
            "check",
            "--bootstrap-servers",
            f"127.0.0.1:{port}",
            "--timeout-s",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: no Kafka broker answered at 127.0.0.1:")
    assert "within 3 s" in lines[0]
    assert elapsed < 3 + 8  # interpreter start-up plus the configured timeout, no hang
