"""ops/k8s/gpu, the kustomize overlay with a serve replica on a GPU: what it adds and patches,
read the way kustomize builds it (the base's documents, the overlay's resources, its JSON
patches), and checked against the CLI and the CPU Deployment."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.cli import build_parser
from tests.unit.deploy.contract import check_command, flag_value
from tests.unit.deploy.manifests import (
    K8S,
    K8S_BASE,
    container,
    container_env,
    k8s,
    partitions_default,
    resolved_args,
)

OVERLAY = K8S / "gpu"


def overlay() -> dict[str, Any]:
    doc = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def documents(folder: Path) -> list[dict[str, Any]]:
    """The documents of a kustomization's resources, folders (other kustomizations) too."""
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    docs: list[dict[str, Any]] = []
    for resource in listed:
        path = (folder / resource).resolve()
        if path.is_dir():
            docs += documents(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def built() -> list[dict[str, Any]]:
    """The documents ``kubectl apply -k ops/k8s/gpu`` applies (JSON patches of op replace)."""
    docs = documents(OVERLAY)
    for patch in overlay().get("patches", []):
        target = patch["target"]
        matched = [
            d
            for d in docs
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
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
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def gpu_deployment() -> dict[str, Any]:
    return find(built(), "Deployment", "fraudstream-serve-gpu")


def test_the_overlay_builds_on_the_base_and_adds_only_the_gpu_replica() -> None:
    assert overlay()["resources"] == ["../base", "serve-gpu-deployment.yaml"]
    base = {(d["kind"], d["metadata"]["name"]) for d in documents(K8S)}
    assert base == {(d["kind"], d["metadata"]["name"]) for d in documents(K8S_BASE)}
    added = {(d["kind"], d["metadata"]["name"]) for d in built()} - base
    assert added == {("Deployment", "fraudstream-serve-gpu")}


def test_the_gpu_replica_runs_serve_on_cuda_from_the_gpu_image() -> None:
    c = container(gpu_deployment())
    args = resolved_args(c)
    assert args[0] == "serve"
    assert check_command(build_parser(), args) == []
    assert flag_value(args, "--device") == "cuda"
    assert container_env(c)["FRAUDSTREAM_DEVICE"] == "cuda"
    assert c["image"] == "fraudstream:gpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    tolerations = gpu_deployment()["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_it_is_the_cpu_replicas_consumer_group_and_settings_but_the_device() -> None:
    cpu, gpu = container(k8s("Deployment", "fraudstream-serve")), container(gpu_deployment())
    cpu_args, gpu_args = resolved_args(cpu), resolved_args(gpu)
    assert flag_value(gpu_args, "--group-id") == flag_value(cpu_args, "--group-id") == "fraudstream"
    assert [a for a in gpu_args if a != "cuda"] == [a for a in cpu_args if a != "auto"]
    assert gpu["envFrom"] == cpu["envFrom"]
    assert gpu["volumeMounts"] == cpu["volumeMounts"]
    assert gpu["securityContext"] == cpu["securityContext"]
    assert gpu["readinessProbe"] == cpu["readinessProbe"]
    cpu_pod = k8s("Deployment", "fraudstream-serve")["spec"]["template"]
    gpu_pod = gpu_deployment()["spec"]["template"]
    assert gpu_pod["spec"]["securityContext"] == cpu_pod["spec"]["securityContext"]
    assert gpu_pod["spec"]["volumes"] == cpu_pod["spec"]["volumes"]
    assert gpu_pod["metadata"]["annotations"] == cpu_pod["metadata"]["annotations"]


def test_its_pods_are_not_the_cpu_deployments() -> None:
    cpu_selector = k8s("Deployment", "fraudstream-serve")["spec"]["selector"]["matchLabels"]
    gpu_labels = gpu_deployment()["spec"]["template"]["metadata"]["labels"]
    assert not cpu_selector.items() <= gpu_labels.items(), "the CPU Deployment would adopt them"
    spec = gpu_deployment()["spec"]
    assert spec["selector"]["matchLabels"].items() <= gpu_labels.items()


def test_all_replicas_together_never_outnumber_the_partitions() -> None:
    scaled = find(built(), "ScaledObject", "fraudstream-serve")["spec"]
    gpu_replicas = gpu_deployment()["spec"]["replicas"]
    assert gpu_replicas == 1
    assert scaled["maxReplicaCount"] + gpu_replicas == partitions_default()
    assert scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert gpu_deployment()["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", [K8S, OVERLAY])
def test_kustomize_builds_what_these_tests_read(folder: Path) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    real = [d for d in yaml.safe_load_all(done.stdout) if d]
    ours = built() if folder == OVERLAY else documents(folder)

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(real, key=key) == sorted(ours, key=key)
