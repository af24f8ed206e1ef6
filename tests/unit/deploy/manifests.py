"""Loaders for the deployment files: docker-compose.yml, ops/k8s/base/*.yaml, ops/topics.py."""

from __future__ import annotations

import ast
import re
from functools import cache
from typing import Any

import yaml

from tests.infra import ROOT

COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "ops/k8s"
K8S_BASE = K8S / "base"
"""The manifests of every deployment; ``ops/k8s`` applies them, ``ops/k8s/gpu`` adds to them."""
PROMETHEUS = ROOT / "ops/prometheus/prometheus.yml"
GRAFANA = ROOT / "ops/grafana"
DASHBOARD = GRAFANA / "dashboards/fraudstream.json"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The compose services that run the fraudstream image, by what they run.
SERVE_SERVICES = ("serve", "serve-gpu")
LABEL_SERVICES = ("labels",)
PORT_FLAG = {"serve": "--metrics-port", "features": "--web-port"}

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def compose_services() -> dict[str, Any]:
    services = compose()["services"]
    assert isinstance(services, dict)
    return services


def command_tokens(service: dict[str, Any]) -> list[str]:
    """A compose service's command as a list (the image's entrypoint is ``fraudstream``)."""
    command = service["command"]
    assert isinstance(command, list), "write fraudstream commands in list form"
    return [str(t) for t in command]


def port_flag(tokens: list[str]) -> str:
    """The flag that sets the HTTP port of this command (serve or the label pipeline)."""
    return PORT_FLAG[tokens[0]]


@cache
def k8s_documents() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S_BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc["__file__"] = path.name
                docs.append(doc)
    return tuple(docs)


def k8s(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in ops/k8s/base, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def container_env(c: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment as the kubelet builds it; a secret's value is None."""
    env: dict[str, str | None] = {}
    for source in c.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        assert ref, source
        if "configMapRef" in source:
            env.update(k8s("ConfigMap", ref["name"])["data"])
        else:
            env.update(dict.fromkeys(k8s("Secret", ref["name"])["stringData"]))
    for item in c.get("env", []):
        env[item["name"]] = _env_value(item)
    return env


def _env_value(item: dict[str, Any]) -> str | None:
    if "value" in item:
        return str(item["value"])
    ref = item["valueFrom"]
    if "configMapKeyRef" in ref:
        key = ref["configMapKeyRef"]
        return str(k8s("ConfigMap", key["name"])["data"][key["key"]])
    assert "secretKeyRef" in ref, item
    return None


def resolved_args(c: dict[str, Any]) -> list[str]:
    """The container's args with ``$(VAR)`` expanded from its environment, as the kubelet does."""
    env = container_env(c)

    def expand(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        assert value is not None, f"{match.group(0)} is not a plain value in the container's env"
        return value

    return [_VAR.sub(expand, str(arg)) for arg in c["args"]]


def partitions_default() -> int:
    """The ``--partitions`` default of ops/topics.py (read from its source, not run)."""
    tree = ast.parse((ROOT / "ops/topics.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "--partitions"
        ):
            for kw in node.keywords:
                if kw.arg == "default" and isinstance(kw.value, ast.Constant):
                    return int(kw.value.value)
    raise AssertionError("ops/topics.py has no --partitions default")


def serve_shutdown_default_s() -> float:
    """serve's bound on a graceful stop when neither a flag nor the environment sets it."""
    from stream.settings import ServeSettings

    default = ServeSettings.model_fields["shutdown_timeout_s"].default
    return float(default)


def duration_s(text: str) -> float:
    """A compose duration (``45s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)
