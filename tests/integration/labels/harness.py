"""Helpers of the label pipeline's integration tests: the worker as a subprocess, Kafka in and
out through confluent-kafka, and what the store holds per terminal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Producer

from tests.infra import FRAUDSTREAM, reader

ROOT = Path(__file__).resolve().parents[3]
Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]


@dataclass(frozen=True)
class LabelTopics:
    """The worker's topics in one test."""

    labels: str
    dlq: str
    decisions: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    check: Callable[[], Any],
    timeout_s: float,
    what: str,
    every_s: float = 0.2,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and what
    ``detail`` says then: where it got to, a log)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            said = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{said}")
        time.sleep(every_s)


@dataclass
class Worker:
    """``fraudstream features run`` (or ``python -m fraudstream.features.labels.worker`` when not
    ``via_cli``, or ``python -m <module>``) with its own port, log file and settings."""

    args: list[str]
    env: dict[str, str]
    workdir: Path
    via_cli: bool = True
    module: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"worker-{self.starts}.log"

    def start(self, timeout_s: float = 60) -> Worker:
        self.starts += 1
        if self.module is not None:
            cmd = [sys.executable, "-m", self.module]
        elif self.via_cli:
            cmd = [*FRAUDSTREAM, "features", "run"]
        else:
            cmd = [sys.executable, "-m", "fraudstream.features.labels.worker"]
        cmd += [*self.args, "--web-port", str(self.port)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(self._healthy, timeout_s, f"/healthz of the label worker ({self.log})")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"label worker exited {self.proc.returncode}: {self.tail()}")
        try:
            return self.get("/healthz") == b'{"status":"ok"}'
        except (urllib.error.URLError, OSError):
            return False

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            body: bytes = resp.read()
            return body

    def kpis(self) -> list[dict[str, Any]]:
        hours: list[dict[str, Any]] = orjson.loads(self.get("/kpis"))["hours"]
        return hours

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.get("/metrics").decode(), name, **labels)

    def consumer(self) -> str:
        """``/consumer`` (the consumer's state per partition), or why it could not be read."""
        try:
            return self.get("/consumer").decode()
        except (urllib.error.URLError, OSError) as exc:
            return f"(/consumer unreadable: {exc})"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last commit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return -1 if self.proc is None else int(self.proc.returncode)
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stacks(self, n: int = 15000) -> str:
        """The log's end after SIGUSR1, on which faust's worker (``mode``) writes every
        thread's stack and every asyncio task's to its stderr: where a stalled worker
        waits."""
        if self.proc is None or self.proc.poll() is not None:
            return f"(worker not running) {self.tail()}"
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(2.0)
        return self.tail(n)


def worker_env(**settings: object) -> dict[str, str]:
    """The test's environment without FRAUDSTREAM_* settings, plus ``settings`` as variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"FRAUDSTREAM_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` in a Prometheus text page (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        base, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == want:
            return float(value)
    return 0.0


def produce(bootstrap: str, topic: str, messages: Iterable[Message]) -> int:
    """Publish (key, value, headers) messages in order; returns how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    n = 0
    for key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers)
        producer.poll(0)
        n += 1
    assert producer.flush(30) == 0
    return n


def consume(bootstrap: str, topic: str, n: int, timeout_s: float = 30) -> list[Any]:
    """Read ``n`` messages from the start of ``topic`` (fails if fewer come), then check for
    one more for a moment (fails if any)."""
    consumer = reader(bootstrap, topic)
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
        extra = consumer.poll(2.0)
        assert extra is None or extra.error() is not None, "more messages than expected"
    finally:
        consumer.close()
    assert len(out) == n, f"{len(out)} of {n} messages on {topic}"
    return out


def store_labels(redis_url: str, prefix: str) -> dict[str, tuple[set[str], set[str]]]:
    """Terminal -> (labelled tx ids, fraud tx ids) as the store holds them."""
    client = redis.Redis.from_url(redis_url)
    out: dict[str, tuple[set[str], set[str]]] = {}
    try:
        for key in client.scan_iter(match=f"{prefix}:{{t:*}}:l", count=1000):
            terminal = key.decode()[len(prefix) + 4 : -3]
            labelled = {m.decode() for m in client.zrange(key, 0, -1)}
            frauds = {m.decode() for m in client.zrange(key[:-1] + b"f", 0, -1)}
            out[terminal] = (labelled, frauds)
    finally:
        client.close()
    return out


def count_labels(redis_url: str, prefix: str) -> int:
    return sum(len(labelled) for labelled, _ in store_labels(redis_url, prefix).values())


def expected_labels(
    labels: Sequence[tuple[str, str, bool]],
) -> dict[str, tuple[set[str], set[str]]]:
    """Terminal -> (labelled, fraud) ids from (terminal, tx id, is_fraud), first label wins."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    seen: set[str] = set()
    for terminal, tx_id, is_fraud in labels:
        if tx_id in seen:
            continue
        seen.add(tx_id)
        labelled, frauds = out.setdefault(terminal, (set(), set()))
        labelled.add(tx_id)
        if is_fraud:
            frauds.add(tx_id)
    return out
