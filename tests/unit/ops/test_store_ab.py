"""ops/bench/store_ab.py: arms named clearly, bad ones refused, the paired ratio's sums."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import numpy as np
import pytest

from tests.infra import ROOT


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_ab", ROOT / "ops/bench/store_ab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["store_ab"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("spec", ["set2", "=HEAD", "set2="])
def test_an_arm_without_name_and_tree_is_refused(
    spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _tool().main(["--arm", spec, "--arm", "b=HEAD"])
    assert exc.value.code == 2
    assert "expected NAME=TREE or NAME=REVISION" in capsys.readouterr().err


def test_one_arm_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _tool().main(["--arm", "a=HEAD"])
    assert "at least two --arm" in capsys.readouterr().err


def test_a_tree_that_is_neither_folder_nor_revision_names_it() -> None:
    with pytest.raises(SystemExit, match="'no-such-rev-xyz' is neither a directory nor"):
        with _tool().arm_tree("no-such-rev-xyz"):
            pass


def test_the_ratio_is_of_the_totals_with_an_interval_around_it() -> None:
    ref = np.array([10.0, 30.0, 20.0, 40.0] * 5)
    other = ref * 1.2
    other[0] += 4.0  # one noisy batch
    figures = _tool()._report(["a", "b"], [ref, other])
    ratio = figures["ratios"]["b/a"]
    assert ratio["ratio"] == pytest.approx(other.sum() / ref.sum(), abs=1e-3)
    low, high = ratio["ci95"]
    assert low <= ratio["ratio"] <= high
    assert 1.19 < low and high < 1.25
