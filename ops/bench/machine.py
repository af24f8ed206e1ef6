"""What the figures were measured on: cores, memory, load, software versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("confluent-kafka", "xgboost", "faust-streaming", "redis", "numpy", "orjson")


def describe(redis_url: str) -> dict[str, Any]:
    """Cores, memory, load average and versions, for results.json."""
    versions = {name: _version(name) for name in PACKAGES}
    versions["librdkafka"] = confluent_kafka.libversion()[0]
    versions["redis_server"] = _redis_server(redis_url)
    return {
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "note": "Kafka broker, Redis and every arm share these cores",
    }


def process_cpu_s(pid: int) -> float | None:
    """A live process's CPU seconds so far (user + system), None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _redis_server(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2)
        info = client.info("server")
        client.close()
    except redis.RedisError:
        return None
    return str(info.get("redis_version"))
