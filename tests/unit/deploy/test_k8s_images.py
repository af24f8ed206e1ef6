"""The images of ops/k8s can be overridden with kustomize, without editing a manifest:
``kustomize edit set image fraudstream=registry.example.com/fraudstream:1.2`` in the folder
that is applied moves the CPU containers, and ``fraudstream-gpu=...`` the GPU replica's.

The edit is the real ``kustomize`` where it is on PATH, else what it writes (the entry of that
name replaced, the entries sorted by name); the build is ``kubectl kustomize`` where kubectl is
on PATH, else the emulation that test_k8s_gpu.py compares with it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.manifests import (
    K8S,
    K8S_BASE,
    K8S_GPU,
    compose_services,
    image_name,
    kubectl_kustomize,
    kustomization,
    kustomize_build,
)

CPU, GPU = "fraudstream", "fraudstream-gpu"
"""The names the manifests give the images; the ``images`` entries map them."""
GPU_DEPLOYMENT = "fraudstream-serve-gpu"
REGISTRY = "registry.example.com/fraudstream"


def build(folder: Path) -> list[dict[str, Any]]:
    return kubectl_kustomize(folder) if shutil.which("kubectl") else kustomize_build(folder)


def images(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Each Deployment's container image, by Deployment name."""
    found: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] == "Deployment":
            [c] = doc["spec"]["template"]["spec"]["containers"]
            found[doc["metadata"]["name"]] = c["image"]
    return found


def set_image(folder: Path, spec: str) -> None:
    """``kustomize edit set image NAME=NEW_NAME:TAG`` in ``folder``."""
    if shutil.which("kustomize"):
        subprocess.run(["kustomize", "edit", "set", "image", spec], cwd=folder, check=True)
        return
    name, _, new = spec.partition("=")
    new_name, _, tag = new.rpartition(":")
    path = folder / "kustomization.yaml"
    doc = yaml.safe_load(path.read_text())
    entries = [e for e in doc.get("images", []) if e["name"] != name]
    entries.append({"name": name, "newName": new_name, "newTag": tag})
    doc["images"] = sorted(entries, key=lambda e: e["name"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """A copy of ops/k8s to edit."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    return copy


def test_every_image_in_the_manifests_has_an_entry_to_override_it() -> None:
    base = kustomization(K8S_BASE)["images"]
    assert [e["name"] for e in base] == [CPU]
    assert set(images(_raw(K8S_BASE)).values()) == {"fraudstream:latest"}
    overlay = kustomization(K8S_GPU)["images"]
    assert [e["name"] for e in overlay] == [CPU, GPU]
    assert images(_raw(K8S_GPU)) == {GPU_DEPLOYMENT: GPU}


def test_the_overlay_keeps_its_entries_in_the_order_kustomize_edit_writes() -> None:
    """kustomize applies the entries one after the other: an entry named fraudstream after
    the GPU one would retag the GPU image it produced (fraudstream:gpu). `kustomize edit`
    sorts them by name, which puts the GPU entry last."""
    names = [e["name"] for e in kustomization(K8S_GPU)["images"]]
    assert names == sorted(names) and names[-1] == GPU
    assert image_name(GPU) != CPU


def test_the_default_images_are_the_ones_compose_builds() -> None:
    services = compose_services()
    cpu, gpu = services["serve"]["image"], services["serve-gpu"]["image"]
    assert (cpu, gpu) == ("fraudstream:latest", "fraudstream:gpu")
    assert set(images(build(K8S)).values()) == {cpu}
    built = images(build(K8S_GPU))
    assert built.pop(GPU_DEPLOYMENT) == gpu
    assert set(built.values()) == {cpu}


@pytest.mark.parametrize("folder", [".", "base", "gpu"])
def test_setting_the_image_moves_every_cpu_container_and_not_the_gpu_one(
    k8s_copy: Path, folder: str
) -> None:
    set_image(k8s_copy / folder, f"{CPU}={REGISTRY}:1.2")
    built = images(build(k8s_copy / folder))
    gpu = built.pop(GPU_DEPLOYMENT, None)
    assert set(built) == {"fraudstream-serve", "fraudstream-labels"}
    assert set(built.values()) == {f"{REGISTRY}:1.2"}
    assert gpu == ("fraudstream:gpu" if folder == "gpu" else None)


def test_setting_the_gpu_image_moves_only_the_gpu_replica(k8s_copy: Path) -> None:
    set_image(k8s_copy / "gpu", f"{GPU}={REGISTRY}:1.2-gpu")
    built = images(build(k8s_copy / "gpu"))
    assert built.pop(GPU_DEPLOYMENT) == f"{REGISTRY}:1.2-gpu"
    assert set(built.values()) == {"fraudstream:latest"}
    set_image(k8s_copy / "gpu", f"{CPU}={REGISTRY}:1.2")
    built = images(build(k8s_copy / "gpu"))
    assert built.pop(GPU_DEPLOYMENT) == f"{REGISTRY}:1.2-gpu"
    assert set(built.values()) == {f"{REGISTRY}:1.2"}


def _raw(folder: Path) -> list[dict[str, Any]]:
    """The documents of a folder's own files, before any kustomization changes them."""
    docs: list[dict[str, Any]] = []
    for resource in kustomization(folder)["resources"]:
        path = folder / resource
        if path.is_file():
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs
