"""``fraudstream serve`` as a subprocess on the bench's topics, group and Redis prefix."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServeSpec:
    """Everything a serve process of one arm shares with its group mates."""

    bootstrap: str
    """Kafka bootstrap servers."""
    redis_url: str
    """Feature store."""
    prefix: str
    """Redis key prefix (unique per arm)."""
    registry: Path
    """Model registry with a promoted model."""
    group: str
    """Consumer group (unique per arm)."""
    input_topic: str
    """Transactions."""
    decisions: str
    """Decisions topic."""
    alerts: str
    """Alerts topic."""
    dlq: str
    """Dead-letter topic."""
    budget_ms: float = 50.0
    """Latency budget."""
    extra: tuple[str, ...] = ()
    """More serve flags (e.g. the guarantee)."""

    def args(self, profile: Path | None = None) -> list[str]:
        """The command line; under cProfile (stats written at exit) when ``profile``."""
        python = [sys.executable]
        if profile is not None:
            python += ["-m", "cProfile", "-o", str(profile)]
        return [
            *python,
            "-m",
            "fraudstream.stream.cli",
            "--log-level",
            "WARNING",
            "serve",
            "--bootstrap-servers",
            self.bootstrap,
            "--redis-url",
            self.redis_url,
            "--redis-prefix",
            self.prefix,
            "--registry",
            str(self.registry),
            "--group-id",
            self.group,
            "--input-topic",
            self.input_topic,
            "--decisions-topic",
            self.decisions,
            "--alerts-topic",
            self.alerts,
            "--dlq-topic",
            self.dlq,
            "--metrics-port",
            "0",
            "--budget-ms",
            f"{self.budget_ms:g}",
            *self.extra,
        ]


def start(spec: ServeSpec, log: Path, profile: Path | None = None) -> subprocess.Popen[bytes]:
    """Start one serve process logging to ``log`` (under cProfile when ``profile``)."""
    with log.open("wb") as sink:
        return subprocess.Popen(spec.args(profile), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)


def tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""
