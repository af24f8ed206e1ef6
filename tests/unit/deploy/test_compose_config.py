"""docker-compose.yml is a valid Compose file: it follows the Compose Specification's JSON schema
(vendored in schema/, see schema/README.md) and its cross-references resolve, which needs no
Docker; and ``docker compose config -q`` accepts it where the docker compose CLI is installed
(skipped, with the reason, elsewhere)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.infra import ROOT
from tests.unit.deploy.manifests import COMPOSE, compose

SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA = SCHEMA_DIR / "compose-spec.json"


@cache
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_problems(doc: dict[str, Any]) -> list[str]:
    """Where and how ``doc`` breaks the Compose Specification's schema."""
    return sorted(
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator().iter_errors(doc)
    )


def reference_problems(doc: dict[str, Any]) -> list[str]:
    """What `docker compose config` rejects beyond the schema: dependencies on services that
    do not exist or do not run with the dependent, named volumes and networks not declared."""
    services = doc["services"]
    volumes = set(doc.get("volumes") or {})
    networks = set(doc.get("networks") or {}) | {"default"}
    problems: list[str] = []
    for name, service in services.items():
        for dep in service.get("depends_on") or {}:
            if dep not in services:
                problems.append(f"{name}: depends on undefined service {dep}")
            elif services[dep].get("profiles") and not service.get("profiles"):
                problems.append(f"{name}: depends on {dep}, which runs only in its profiles")
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                problems.append(f"{name}: volume {source} is not declared")
        for network in service.get("networks") or []:
            if network not in networks:
                problems.append(f"{name}: network {network} is not declared")
    return problems


def test_the_vendored_schema_is_the_one_its_readme_names() -> None:
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest in (SCHEMA_DIR / "README.md").read_text()
    assert (SCHEMA_DIR / "LICENSE.compose-spec").read_text().count("Apache License") >= 1
    assert json.loads(SCHEMA.read_text())["title"] == "Compose Specification"


def test_docker_compose_yml_follows_the_compose_specification() -> None:
    assert schema_problems(compose()) == []


def test_its_references_resolve() -> None:
    assert reference_problems(compose()) == []


def _broken(change: str) -> dict[str, Any]:
    doc = copy.deepcopy(compose())
    services = doc["services"]
    if change == "misspelt key":
        services["serve"]["healthchek"] = services["serve"].pop("healthcheck")
    elif change == "unknown condition":
        services["serve"]["depends_on"] = {"kafka": {"condition": "service_ready"}}
    elif change == "wrong type":
        services["redis"]["ports"] = {"6379": 6379}
    elif change == "unknown top-level key":
        doc["service"] = {}
    return doc


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("misspelt key", r"^services\.serve: .*'healthchek' was unexpected"),
        ("unknown condition", r"^services\.serve\.depends_on: .* not valid under any"),
        ("wrong type", r"^services\.redis\.ports: .* is not of type 'array'"),
        ("unknown top-level key", r"^\(top\): 'service' does not match any of the regexes"),
    ],
)
def test_the_schema_check_names_what_is_wrong(change: str, where: str) -> None:
    problems = schema_problems(_broken(change))
    assert any(re.search(where, p) for p in problems), problems


def test_the_reference_check_names_what_is_wrong() -> None:
    doc = copy.deepcopy(compose())
    services = doc["services"]
    services["serve"]["depends_on"] = {"zookeeper": {}, "serve-gpu": {}}
    services["labels"]["volumes"] = ["labels-data:/var/lib/fraudstream"]
    services["redis"]["networks"] = ["backend"]
    assert reference_problems(doc) == [
        "redis: network backend is not declared",
        "serve: depends on undefined service zookeeper",
        "serve: depends on serve-gpu, which runs only in its profiles",
        "labels: volume labels-data is not declared",
    ]


def compose_cli() -> tuple[list[str] | None, str]:
    """The docker compose command (the CLI plugin, else a standalone v2), or why there is none.
    It needs no Docker engine to check a file."""
    if shutil.which("docker") is None and shutil.which("docker-compose") is None:
        return None, "neither docker nor docker-compose is installed"
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, timeout=60
        )
        if done.returncode == 0 and done.stdout.strip().lstrip("v").split(".")[0] not in ("", "1"):
            return command, ""
    return None, "no docker compose v2 CLI (`docker compose version` failed: plugin missing)"


def run_config(
    command: list[str], path: Path, profiles: list[str]
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    flags = [arg for p in profiles for arg in ("--profile", p)]
    return subprocess.run(
        [*command, "-f", str(path), "--project-directory", str(ROOT), *flags, "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize("profiles", [[], ["gpu"]], ids=["default", "gpu"])
def test_docker_compose_config_accepts_the_file(profiles: list[str]) -> None:
    command, why = compose_cli()
    if command is None:
        pytest.skip(why)
    done = run_config(command, COMPOSE, profiles)
    assert done.returncode == 0, done.stderr


def test_docker_compose_config_rejects_a_broken_copy(tmp_path: Path) -> None:
    command, why = compose_cli()
    if command is None:
        pytest.skip(why)
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(_broken("misspelt key")))
    done = run_config(command, broken, [])
    assert done.returncode != 0
    assert "healthchek" in done.stderr
