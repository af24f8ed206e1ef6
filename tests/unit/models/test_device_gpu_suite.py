"""The gpu suite (tests/gpu) is skipped wherever no GPU works, CI included, so nothing there
would notice it break. Its dry run (``FRAUDSTREAM_TEST_GPU_AS=cpu``: the CUDA backend's code
on the CPU, NumPy standing in for CuPy) runs here: every test passes but the two that need
CuPy itself."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.infra import ROOT

pytestmark = pytest.mark.slow

NEEDS_CUPY = {
    "test_cuda_n_scores_on_device_n",
    "test_a_cuda_ordinal_past_the_last_gpu_is_refused_in_one_line",
    "test_the_forest_kernel_runs_on_a_real_device",
}


def test_the_gpu_suite_passes_its_dry_run(tmp_path: Path) -> None:
    report = tmp_path / "gpu.xml"
    env = os.environ | {"FRAUDSTREAM_TEST_GPU_AS": "cpu"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu"]
    done = subprocess.run(
        [*argv, f"--junitxml={report}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    outcome = {}
    for case in cases:
        skipped = case.find("skipped")
        outcome[case.get("name", "")] = "passed" if skipped is None else skipped.get("message")
    assert {name for name, o in outcome.items() if o != "passed"} == {
        name for name in outcome if name.split("[")[0] in NEEDS_CUPY
    }
    assert {o for o in outcome.values() if o != "passed"} == {"the dry run has no CuPy"}
    assert len(outcome) >= 15
