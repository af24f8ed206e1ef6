"""The gpu suite's shared pieces: one simulated world, one model trained on it with the
default parameters, and that model loaded on the cpu and on the CUDA device under test.

Every test here is marked ``gpu``: ``tests/conftest.py`` skips it, with the reason, where no
CUDA device works. With ``FRAUDSTREAM_TEST_GPU_AS=cpu`` the "cuda" scorer is the CUDA
backend's own code run on the CPU through NumPy standing in for CuPy: that checks these
tests' logic on any machine (``tests/unit/models/test_device_gpu_suite.py``), not the GPU.
"""

from __future__ import annotations

import contextlib
import sys
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.models import train
from fraudstream.models.backend import CudaBackend, forest_for, load_booster, tree_shap_for
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.models.threads import ThreadPolicy

WORLD = SimulatorConfig(n_customers=1000, n_terminals=5000, n_days=75, seed=1)
"""The scoring bench's world (about 150,000 transactions)."""
TRAIN_START = "2018-05-20"

NUMPY_AS_CUPY = SimpleNamespace(
    asarray=np.asarray,
    asnumpy=np.asarray,
    cuda=SimpleNamespace(Device=lambda _n: contextlib.nullcontext()),
)


@pytest.fixture(scope="session")
def world() -> pd.DataFrame:
    return simulate(WORLD)


@pytest.fixture(scope="session")
def features(world: pd.DataFrame) -> npt.NDArray[np.float32]:
    """The world's feature rows, in event-time order."""
    return compute_features(world, FeatureConfig()).astype(np.float32)


@pytest.fixture(scope="session")
def gpu_registry(world: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry whose CURRENT model is trained on the cpu with the default parameters."""
    registry = Registry(tmp_path_factory.mktemp("gpu") / "registry")
    result = train.train(world, train.TrainRequest(TRAIN_START, folds=1))
    registry.promote(train.register(registry, result))
    return registry


@pytest.fixture(scope="session")
def cpu_scorer(gpu_registry: Registry) -> Scorer:
    return Scorer.load(gpu_registry, None, "cpu")


@pytest.fixture(scope="session")
def cuda_scorer(gpu_registry: Registry, cuda_device: str) -> Scorer:
    """The model on the device under test, loaded as serve loads it (its reasons path
    measured); in a dry run, the CUDA backend on the CPU."""
    if cuda_device != "cpu":
        return Scorer.load(gpu_registry, None, cuda_device)
    return dry_run_scorer(gpu_registry)


def dry_run_scorer(registry: Registry, version: str | None = None) -> Scorer:
    manifest, raw = registry.read_model(version or str(registry.current()))
    source = f"model {manifest.version}"
    booster = load_booster(raw, source)
    shap, forest = tree_shap_for(booster, source), forest_for(booster, source)
    backend = CudaBackend(booster, "cpu", NUMPY_AS_CUPY, shap, forest)  # type: ignore[arg-type]
    backend.measure_shap(len(manifest.feature_names))
    scorer = Scorer(manifest, backend, ThreadPolicy(cores=1, multi_from_rows=sys.maxsize))
    scorer.warm_up()
    return scorer
