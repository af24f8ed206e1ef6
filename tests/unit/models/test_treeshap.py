"""Table TreeSHAP against XGBoost's own path-dependent TreeSHAP, on models of every shape
it accepts, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.models import treeshap
from fraudstream.models.backend import CpuBackend
from fraudstream.models.treeshap import TreeShap, Unsupported


def _data(rows: int, features: int, seed: int, missing: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1] * 3)  # ties on thresholds
    logit = 1.5 * x[:, 0] - 2.0 * np.abs(x[:, 1]) + x[:, 2] * x[:, 3]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    x[rng.random(x.shape) < missing] = np.nan  # learned default directions both ways
    return x, y


def _train(depth: int, trees: int, seed: int = 0, **params: object) -> xgb.Booster:
    x, y = _data(3000, 6, seed, missing=0.15)
    base = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": depth}
    base |= {"nthread": 1, "seed": seed, "min_child_weight": 0.5} | params
    return xgb.train(base, xgb.DMatrix(x, y, missing=np.nan), trees)


def _xgboost(booster: xgb.Booster, x: np.ndarray, trees: int = 0) -> np.ndarray:
    matrix = xgb.DMatrix(x, missing=np.nan)
    return booster.predict(matrix, pred_contribs=True, iteration_range=(0, trees))


@pytest.mark.parametrize(
    ("depth", "trees", "params"),
    [
        (1, 5, {}),
        (3, 40, {}),
        (6, 30, {"subsample": 0.7, "colsample_bytree": 0.6}),  # features repeat on paths
        (4, 10, {"num_parallel_tree": 3, "subsample": 0.8}),  # several trees a round
        (3, 20, {"base_score": 0.1, "scale_pos_weight": 4.0}),
    ],
)
def test_contributions_equal_xgboost(depth: int, trees: int, params: dict[str, object]) -> None:
    booster = _train(depth, trees, **params)
    x, _ = _data(300, 6, seed=7, missing=0.2)
    x[:5] = np.nan  # rows with every feature missing
    got = TreeShap(booster).contribs(x)
    want = _xgboost(booster, x)
    assert got.shape == want.shape == (300, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    # and they add up to the margin, as SHAP values must
    margin = booster.predict(xgb.DMatrix(x, missing=np.nan), output_margin=True)
    np.testing.assert_allclose(got.sum(axis=1), margin, rtol=1e-5, atol=2e-5)


def test_first_trees_only_like_iteration_range() -> None:
    booster = _train(4, 25, num_parallel_tree=2)
    shap = TreeShap(booster)
    x, _ = _data(50, 6, seed=3, missing=0.1)
    for trees in (1, 7, 25):
        np.testing.assert_allclose(
            shap.contribs(x, trees), _xgboost(booster, x, trees), rtol=1e-5, atol=2e-5
        )


def test_a_forest_of_single_leaves_has_only_a_bias() -> None:
    x, y = _data(200, 6, seed=1, missing=0.0)
    params = {"objective": "binary:logistic", "max_depth": 3, "min_split_loss": 1e9}
    booster = xgb.train(params, xgb.DMatrix(x, y), 3)
    got = TreeShap(booster).contribs(x[:4])
    np.testing.assert_allclose(got, _xgboost(booster, x[:4]), rtol=1e-5, atol=1e-6)
    assert not got[:, :-1].any()
    assert TreeShap(booster).contribs(x[:0]).shape == (0, 7)


def test_other_objectives_and_oversized_tables_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(Unsupported, match="objective 'reg:squarederror'"):
        TreeShap(_train(3, 3, objective="reg:squarederror"))
    monkeypatch.setattr(treeshap, "MAX_TABLE_ENTRIES", 100)
    with pytest.raises(Unsupported, match=r"table of [\d,]+ entries exceeds 100"):
        TreeShap(_train(3, 3))


def test_backend_falls_back_to_xgboost_where_no_table(monkeypatch: pytest.MonkeyPatch) -> None:
    booster = _train(6, 10)
    raw = bytes(booster.save_raw("ubj"))
    x, _ = _data(20, 6, seed=5, missing=0.1)
    fast = CpuBackend(raw, "model t", cores=1)
    monkeypatch.setattr(treeshap, "MAX_TABLE_ENTRIES", 100)
    slow = CpuBackend(raw, "model t", cores=1)
    assert fast.tree_shap is not None
    assert slow.tree_shap is None
    np.testing.assert_allclose(fast.contribs(x, 0, 1), slow.contribs(x, 0, 1), rtol=1e-5, atol=2e-5)
