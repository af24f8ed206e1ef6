"""Loaders for the deployment files: docker-compose.yml, ops/k8s (read as kustomize builds it),
ops/topics.py."""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.infra import ROOT

COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "ops/k8s"
K8S_BASE = K8S / "base"
"""The manifests of every deployment; ``ops/k8s`` applies them, ``ops/k8s/gpu`` adds to them."""
K8S_GPU = K8S / "gpu"
SECRET_EXAMPLE = K8S_BASE / "secret.example.yaml"
"""The Secret's example, created out of band: not in any kustomization."""
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


def kustomization(folder: Path) -> dict[str, Any]:
    doc = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def kustomize_build(folder: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize <folder>`` builds, for the features these
    kustomizations use: resources (files, other kustomizations), ``images`` (one entry after
    the other, in their order, as kustomize applies them) and JSON patches of op replace.
    tests/unit/deploy/test_k8s_gpu.py compares this with kubectl's output where kubectl is."""
    config = kustomization(folder)
    docs: list[dict[str, Any]] = []
    for resource in config["resources"]:
        path = (folder / resource).resolve()
        if path.is_dir():
            docs += kustomize_build(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for entry in config.get("images", []):
        for c in all_containers(docs):
            c["image"] = retag(c["image"], entry)
    for patch in config.get("patches", []):
        _apply_replace_patch(docs, patch)
    return docs


def kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    """The documents the real ``kubectl kustomize <folder>`` builds (kubectl on PATH)."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def all_containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every container (and init container) of every Deployment in ``docs``."""
    found: list[dict[str, Any]] = []
    for doc in docs:
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            found += pod["containers"] + pod.get("initContainers", [])
    return found


def image_name(image: str) -> str:
    """``registry:5000/app:1.2`` → ``registry:5000/app``: the part kustomize's ``images``
    entries match by name (the tag follows the last colon after the last slash)."""
    without_digest = image.split("@", 1)[0]
    slash = without_digest.rfind("/")
    colon = without_digest.rfind(":")
    return without_digest[:colon] if colon > slash else without_digest


def retag(image: str, entry: dict[str, str]) -> str:
    """What one kustomize ``images`` entry makes of a container's image."""
    assert set(entry) <= {"name", "newName", "newTag"}, f"not emulated: {entry}"
    name = image_name(image)
    if name != entry["name"]:
        return image
    tag = image[len(name) :]
    if "newTag" in entry:
        tag = ":" + str(entry["newTag"])
    return entry.get("newName", name) + tag


def _apply_replace_patch(docs: list[dict[str, Any]], patch: dict[str, Any]) -> None:
    target = patch["target"]
    matched = [
        d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
    ]
    assert len(matched) == 1, target
    for op in yaml.safe_load(patch["patch"]):
        assert op["op"] == "replace", op
        *parents, leaf = op["path"].strip("/").split("/")
        node = matched[0]
        for key in parents:
            node = node[key]
        assert leaf in node, op["path"]
        node[leaf] = op["value"]


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
    from fraudstream.stream.settings import ServeSettings

    default = ServeSettings.model_fields["shutdown_timeout_s"].default
    return float(default)


def duration_s(text: str) -> float:
    """A compose duration (``45s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)
