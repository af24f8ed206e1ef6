"""Shared fixtures for the models tests: a tiny booster and a registry holding it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.models.manifest import Thresholds, TrainWindow
from fraudstream.models.registry import Registry

NAMES = FEATURE_NAMES  # the running definitions: a registered model must match them
SCHEMA = "schema-hash-for-tests"
TREES = 20


def synthetic(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 features and labels driven by amount and terminal risk."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(NAMES))).astype(np.float32)
    logit = 1.5 * x[:, 0] + 2.0 * x[:, 12] - 3.0
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return x, y


@pytest.fixture(scope="session")
def booster() -> xgb.Booster:
    x, y = synthetic(2000)
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(x, y, feature_names=list(NAMES)), TREES)


def register(registry: Registry, booster: xgb.Booster, **overrides: object) -> str:
    fields: dict[str, object] = {
        "feature_names": NAMES,
        "schema_hash": SCHEMA,
        "params": {"max_depth": 3},
        "train_window": TrainWindow("2018-07-25T00:00:00+00:00", "2018-08-01T00:00:00+00:00"),
        "data_fingerprint": "fingerprint",
        "metrics": {"roc_auc": 0.9, "average_precision": float("nan")},
        "thresholds": Thresholds(review=0.3, decline=0.8),
        "device": "cpu",
    }
    fields.update(overrides)
    return registry.register(booster, **fields)  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


@pytest.fixture
def version(registry: Registry, booster: xgb.Booster) -> str:
    return register(registry, booster)


@pytest.fixture(scope="session")
def simulated() -> pd.DataFrame:
    """75 days from 2018-04-01 of a small handbook world (about 150k transactions)."""
    return simulate(SimulatorConfig(n_customers=1000, n_terminals=5000, n_days=75, seed=1))
