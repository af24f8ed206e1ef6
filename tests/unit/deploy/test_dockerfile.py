"""The Dockerfile: multi-stage, python:3.11-slim, pinned install without dev extras, non-root."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field

from tests.infra import ROOT
from tests.unit.deploy.manifests import DOCKERFILE, DOCKERIGNORE, compose_services, k8s


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    pairs = [ln.split(None, 1) for ln in lines if ln and not ln.startswith("#")]
    return [(p[0].upper(), p[1] if len(p) > 1 else "") for p in pairs]


def _parse() -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for op, rest in _instructions():
        if op == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages and op == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
        elif stages:
            stages[-1].instructions.append((op, rest))
    return global_args, stages


def _root_image(base: str, args: dict[str, str], stages: list[Stage]) -> str:
    """Follow a FROM through ARG defaults and stage names to the image it starts from."""
    image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], base)
    named = {s.name: s for s in stages if s.name}
    return _root_image(named[image].base, args, stages) if image in named else image


def _runtime() -> Stage:
    return _parse()[1][-1]


def test_the_runtime_is_python_3_11_slim_built_in_stages() -> None:
    args, stages = _parse()
    assert args["VARIANT"] == "cpu"
    assert len(stages) >= 2
    assert _root_image(stages[-1].base, args, stages) == "python:3.11-slim"
    copies = [rest for op, rest in _runtime().instructions if op == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), "runtime copies only builds"


def test_the_gpu_image_runs_the_same_python_as_the_cpu_image() -> None:
    args, stages = _parse()
    gpu = args | {"VARIANT": "gpu"}
    for stage in (stages[-1], next(s for s in stages if s.name == "builder")):
        assert _root_image(stage.base, gpu, stages) == _root_image(stage.base, args, stages)
    named = {s.name: s for s in stages if s.name}
    env = " ".join(rest for op, rest in named["base-gpu"].instructions if op == "ENV")
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env, "else no libcuda is mounted"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [cupy] = extras["optional-dependencies"]["gpu"]
    assert cupy.startswith("cupy-cuda12x[ctk]"), "the slim base has no CUDA libraries of its own"


def test_the_install_is_pinned_regular_and_without_dev_extras() -> None:
    stages = _parse()[1]
    runs = " ".join(rest for s in stages for op, rest in s.instructions if op == "RUN")
    assert re.search(r"pip install -c constraints\.txt \"?\$spec\"?", runs)
    assert 'spec="."' in runs and 'spec=".[gpu]"' in runs
    assert "dev" not in re.findall(r"\[(\w+)\]", runs)
    assert " -e " not in runs and "--editable" not in runs


def test_it_runs_as_an_unprivileged_numeric_user() -> None:
    users = [rest for op, rest in _runtime().instructions if op == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric, so runAsNonRoot can verify it"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    for name in ("serve", "labels"):
        pod = k8s("Deployment", f"fraudstream-{name}")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_entrypoint_is_the_fraudstream_console_script() -> None:
    entry = [rest for op, rest in _runtime().instructions if op == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["fraudstream"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["fraudstream"] == "fraudstream.stream.cli:main"


def test_the_build_context_holds_exactly_what_the_build_copies() -> None:
    patterns = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allowlist"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources: set[str] = set()
    for stage in _parse()[1]:
        for op, rest in stage.instructions:
            if op == "COPY" and not rest.startswith("--from="):
                sources.update(s.rstrip("/") for s in rest.split()[:-1])
    assert sources == allowed
    for source in sources:
        assert (ROOT / source).exists(), source
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["readme"] in sources
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.split(".")[0] for p in packages} <= sources
    # the folders fraudstream/ links into the namespace are copied beside it
    links = [p for p in (ROOT / "fraudstream").iterdir() if p.is_symlink()]
    assert links and {p.resolve().name for p in links} <= sources


def test_compose_and_k8s_run_the_image_this_file_builds() -> None:
    services = compose_services()
    for name in ("serve", "serve-gpu", "labels"):
        assert services[name]["build"]["context"] == "."
        assert services[name]["image"].startswith("fraudstream:")
    assert services["serve-gpu"]["build"]["args"]["VARIANT"] == "gpu"
    for name in ("serve", "labels"):
        c = k8s("Deployment", f"fraudstream-{name}")["spec"]["template"]["spec"]["containers"]
        assert c[0]["image"] == services["serve"]["image"]
