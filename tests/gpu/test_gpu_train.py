"""Training with ``--device cuda``: no XGBoost warning (pytest turns warnings into errors,
and XGBoost warns when a booster on cuda is handed host arrays), and the model it makes
scores the same on both devices."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from fraudstream.features.datafile import write_transactions
from fraudstream.models import cli, train
from fraudstream.models.params import Params
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from tests.gpu.conftest import TRAIN_START, dry_run_scorer
from tests.gpu.test_gpu_scorer import SCORE_TOLERANCE

pytestmark = pytest.mark.gpu

SMALL = Params(n_trees=30, max_depth=4)


def test_training_on_cuda_warns_nothing_and_its_model_scores_alike(
    world: pd.DataFrame,
    features: npt.NDArray[np.float32],
    cuda_device: str,
    tmp_path: Path,
) -> None:
    request = train.TrainRequest(TRAIN_START, folds=2, params=SMALL, device=cuda_device)
    result = train.train(world, request)
    assert result.device == cuda_device
    assert len(result.provenance["folds"]) == 2
    registry = Registry(tmp_path / "registry")
    version = train.register(registry, result)
    registry.promote(version)
    cpu = Scorer.load(registry, version, "cpu")
    cuda = Scorer.load(registry, version, cuda_device) if cuda_device != "cpu" else None
    cuda = cuda or dry_run_scorer(registry, version)
    got, want = cuda.score(features), cpu.score(features)
    assert float(np.max(np.abs(got - want))) <= SCORE_TOLERANCE
    np.testing.assert_array_equal(cuda.decide(got), cpu.decide(want))


def test_the_train_command_on_cuda(
    world: pd.DataFrame, cuda_device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_transactions(world, tmp_path / "world.parquet")
    parser = argparse.ArgumentParser(prog="fraudstream")
    cli.register(parser.add_subparsers(dest="command", required=True))
    argv = ["train", "--data", str(data), "--registry", str(tmp_path / "registry")]
    argv += ["--train-start", TRAIN_START, "--folds", "1", "--device", cuda_device]
    args = parser.parse_args([*argv, "--params", '{"n_trees": 20}'])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"device: {cuda_device} ({cuda_device} was requested)\n")
    assert "registered v0001" in out
