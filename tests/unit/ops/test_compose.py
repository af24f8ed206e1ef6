"""docker-compose.yml agrees with the local scripts: health checks, ports, topic names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.infra import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def _load() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def _script_default(path: Path, var: str) -> str:
    match = re.search(rf"\${{{var}:-(\d+)}}", path.read_text())
    assert match, f"{path} has no default for {var}"
    return match.group(1)


def test_every_service_has_a_health_check() -> None:
    services = _load()["services"]
    assert {"kafka", "redis", "topics"} <= set(services)
    for name, svc in services.items():
        assert "healthcheck" in svc, f"service {name} has no healthcheck"
        assert svc["healthcheck"]["test"], name


def test_ports_match_the_local_scripts() -> None:
    services = _load()["services"]
    kafka_port = _script_default(ROOT / "ops/kafka/kafka.sh", "KAFKA_PORT")
    redis_port = _script_default(ROOT / "ops/redis/redis.sh", "REDIS_PORT")
    assert f"{kafka_port}:{kafka_port}" in services["kafka"]["ports"]
    assert f"{redis_port}:6379" in services["redis"]["ports"]
    assert (
        f"localhost:{kafka_port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    )


def test_topic_names_match_the_local_scripts() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("topics", ROOT / "ops/topics.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compose_topics = _load()["services"]["topics"]["environment"]["TOPICS"].split()
    assert compose_topics == list(module.TOPICS)
