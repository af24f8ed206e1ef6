"""The replication factor of the label pipeline's internal topics (its join topic, the KPI
table's changelog): a flag of ``features run``, 3 on Kubernetes (a production cluster) and 1
in docker-compose.yml (one broker), as the process builds its settings."""

from __future__ import annotations

import argparse

import pytest

from fraudstream.stream.cli import build_parser
from tests.unit.deploy.contract import split_command
from tests.unit.deploy.manifests import (
    command_tokens,
    compose_services,
    container,
    container_env,
    k8s,
    resolved_args,
)
from tests.unit.deploy.pods import settings_of


def _flag() -> argparse.Action:
    parser = split_command(build_parser(), ["features", "run"]).parser
    [action] = [a for a in parser._actions if "--replication-factor" in a.option_strings]
    return action


def test_features_run_has_a_documented_replication_factor_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flag = _flag()
    assert flag.type is int
    assert flag.help and "internal topics" in flag.help
    args = ["features", "run", "--bootstrap-servers", "k:9092", "--replication-factor", "3"]
    assert settings_of(args, {"FRAUDSTREAM_REDIS_URL": None}, monkeypatch).replication_factor == 3
    default = settings_of(args[:-2], {"FRAUDSTREAM_REDIS_URL": None}, monkeypatch)
    assert default.replication_factor == 1


def test_kubernetes_replicates_the_internal_topics_three_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = k8s("ConfigMap", "fraudstream-labels")["data"]
    assert data["FRAUDSTREAM_REPLICATION_FACTOR"] == "3"
    c = container(k8s("Deployment", "fraudstream-labels"))
    settings = settings_of(resolved_args(c), container_env(c), monkeypatch)
    assert settings.replication_factor == 3


def test_compose_keeps_one_replica_on_its_single_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose_services()["labels"]
    settings = settings_of(command_tokens(service), service["environment"], monkeypatch)
    assert settings.replication_factor == 1
    kafka = compose_services()["kafka"]["environment"]
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 1, "one broker"
