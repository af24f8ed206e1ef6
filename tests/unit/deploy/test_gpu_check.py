"""ops/gpu/check.sh and prepare.sh where no GPU is: they stop with one clear line and the
exit status their header documents."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import ROOT


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A tree holding only the GPU scripts (so nothing was carried into it)."""
    (tmp_path / "ops/gpu").mkdir(parents=True)
    for name in ("check.sh", "prepare.sh"):
        shutil.copy2(ROOT / "ops/gpu" / name, tmp_path / "ops/gpu" / name)
    return tmp_path


def run(checkout: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = os.environ | {"PYTHON": sys.executable, "OUT": str(checkout / "out")} | env
    return subprocess.run(
        ["bash", str(checkout / "ops/gpu" / script), *args],
        cwd=checkout,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_unknown_mode_prints_the_usage(checkout: Path) -> None:
    done = run(checkout, "check.sh", "go")
    assert done.returncode == 2
    assert done.stderr == "usage: ops/gpu/check.sh stage|run|all|local (see ops/gpu/README.md)\n"


def test_stage_without_the_carried_folder_names_it(checkout: Path) -> None:
    done = run(checkout, "check.sh", "stage", FRAUDSTREAM_GPU_STASH=str(checkout / "stash"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "check: error: ops/gpu/wheels/call1 did not travel: run ops/gpu/prepare.sh where pip "
        "works and carry ops/gpu/wheels/call1"
    ]
    inventory = (checkout / "out/inventory.txt").read_text()
    assert f"== {sys.executable}" in inventory and "== import cupy" in inventory


def test_run_on_a_fresh_machine_says_call_1_must_come_again(checkout: Path) -> None:
    done = run(checkout, "check.sh", "run", FRAUDSTREAM_GPU_STASH=str(checkout / "stash"))
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"check: error: call 1's files are not in {checkout / 'stash'}: this machine is a fresh "
        "one (the last was given back between the calls); run 'ops/gpu/check.sh stage' with "
        "ops/gpu/wheels/call1 again, then this"
    ]


def test_run_refuses_parts_that_do_not_match_their_checksums(checkout: Path) -> None:
    stash = checkout / "stash"
    (stash / "parts").mkdir(parents=True)
    (stash / "parts/xgboost.tar.xz.part0").write_bytes(b"first half")
    (stash / "parts/SHA256SUMS").write_text(
        "0" * 64 + "  xgboost.tar.xz.part0\n" + "0" * 64 + "  xgboost.tar.xz.part1\n"
    )
    carried = checkout / "ops/gpu/wheels/call2"
    carried.mkdir(parents=True)
    (carried / "xgboost.tar.xz.part1").write_bytes(b"second half")
    done = run(checkout, "check.sh", "run", FRAUDSTREAM_GPU_STASH=str(stash))
    assert done.returncode == 4
    assert done.stderr.splitlines()[-1] == (
        "check: error: the xgboost parts do not match SHA256SUMS: run ops/gpu/prepare.sh again"
    )


@pytest.mark.parametrize("version", ["3.10", "2", "latest"])
def test_prepare_takes_only_the_python_versions_it_knows(checkout: Path, version: str) -> None:
    done = run(checkout, "prepare.sh", version)
    assert done.returncode == 2
    assert done.stderr == f"error: python version must be 3.11, 3.12 or 3.13, got '{version}'\n"
