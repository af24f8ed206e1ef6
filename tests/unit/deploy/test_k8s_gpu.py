"""ops/k8s/gpu, the kustomize overlay with a serve replica on a GPU: what it adds and patches,
read the way kustomize builds it (the base's documents, the overlay's resources, its JSON
patches), and checked against the CLI and the CPU Deployment."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from fraudstream.stream.cli import build_parser
from tests.unit.deploy.contract import check_command, flag_value
from tests.unit.deploy.manifests import (
    K8S,
    K8S_BASE,
    K8S_GPU,
    container,
    container_env,
    k8s,
    kubectl_kustomize,
    kustomization,
    kustomize_build,
    partitions_default,
    resolved_args,
)

OVERLAY = K8S_GPU


def overlay() -> dict[str, Any]:
    return kustomization(OVERLAY)


def built() -> list[dict[str, Any]]:
    """The documents ``kubectl apply -k ops/k8s/gpu`` applies."""
    return kustomize_build(OVERLAY)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def gpu_deployment() -> dict[str, Any]:
    return find(built(), "Deployment", "fraudstream-serve-gpu")


def test_the_overlay_builds_on_the_base_and_adds_only_the_gpu_replica() -> None:
    assert overlay()["resources"] == ["../base", "serve-gpu-deployment.yaml"]
    base = {(d["kind"], d["metadata"]["name"]) for d in kustomize_build(K8S)}
    assert base == {(d["kind"], d["metadata"]["name"]) for d in kustomize_build(K8S_BASE)}
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
@pytest.mark.parametrize("folder", [K8S, K8S_BASE, OVERLAY])
def test_kustomize_builds_what_these_tests_read(folder: Path) -> None:
    real = kubectl_kustomize(folder)
    ours = kustomize_build(folder)

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(real, key=key) == sorted(ours, key=key)
