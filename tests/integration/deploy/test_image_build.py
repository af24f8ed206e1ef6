"""The Dockerfile builds, and its image runs the fraudstream CLI as the unprivileged user, from
an installed package (no source tree): built with the Docker engine where one answers
(`docker info`), skipped with the reason elsewhere. Building takes minutes (the pinned
dependencies are installed), hence `slow`. The GPU variant (CuPy with the CUDA libraries,
gigabytes) builds only where FRAUDSTREAM_TEST_GPU_IMAGE=1 asks for it; it needs no GPU."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.infra import ROOT, docker_available

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUILD_TIMEOUT_S = 1_800


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=["cpu", "gpu"])
def image(request: pytest.FixtureRequest) -> Iterator[str]:
    """The image built from the Dockerfile for one variant; removed afterwards."""
    variant = str(request.param)
    if not docker_available():
        pytest.skip("no Docker engine answers (`docker info` failed): the image is not built")
    if variant == "gpu" and os.environ.get("FRAUDSTREAM_TEST_GPU_IMAGE") != "1":
        pytest.skip("the GPU image is gigabytes: FRAUDSTREAM_TEST_GPU_IMAGE=1 builds it")
    tag = f"fraudstream-test:{variant}-{uuid.uuid4().hex[:8]}"
    done = _docker(
        "build", "--build-arg", f"VARIANT={variant}", "-t", tag, str(ROOT), timeout=BUILD_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-6000:]
    try:
        yield tag
    finally:
        _docker("image", "rm", "--force", tag)


def test_the_image_runs_the_cli_as_the_unprivileged_user(image: str) -> None:
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["Entrypoint"] == ["fraudstream"]
    assert config["User"] == "10001:10001"
    assert {"9108/tcp", "6066/tcp"} <= set(config["ExposedPorts"])

    usage = _docker("run", "--rm", image, "--help")
    assert usage.returncode == 0, usage.stderr
    assert "serve" in usage.stdout and "features" in usage.stdout
    labels = _docker("run", "--rm", image, "features", "run", "--help")
    assert labels.returncode == 0, labels.stderr
    assert "--replication-factor" in labels.stdout

    uid = _docker("run", "--rm", "--entrypoint", "id", image, "-u")
    assert uid.stdout.strip() == "10001"


def test_the_image_holds_the_installed_package_and_no_source_tree(image: str) -> None:
    probe = (
        "import os; from importlib.metadata import distribution; "
        "print(distribution('fraudstream').locate_file('')); print(os.path.exists('/src'))"
    )
    done = _docker("run", "--rm", "--entrypoint", "python", image, "-c", probe)
    assert done.returncode == 0, done.stderr
    location, has_source = done.stdout.split()
    assert location.startswith("/opt/venv/lib/") and location.rstrip("/").endswith("site-packages")
    assert has_source == "False"
