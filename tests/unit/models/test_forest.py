"""The forest kernel's walk (in NumPy, its reference) against XGBoost's CPU predictor, the
models it refuses, and the CUDA backend choosing it. The kernel itself runs only on a GPU
(tests/gpu)."""

from __future__ import annotations

import contextlib
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.models.backend import CudaBackend, forest_for
from fraudstream.models.forest import Forest, probe_rows, sigmoid
from fraudstream.models.treeshap import Unsupported

NUMPY_AS_CUPY = SimpleNamespace(
    asarray=np.asarray,
    asnumpy=np.asarray,
    cuda=SimpleNamespace(Device=lambda _n: contextlib.nullcontext()),
)
"""CuPy's calls that the backend makes, in NumPy (as tests/gpu's dry run has them)."""


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 12)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1] * 3)  # values equal to thresholds
    logit = 1.5 * x[:, 0] - 2.0 * np.abs(x[:, 1]) + x[:, 2] * x[:, 3]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    return x, y


def _booster(rounds: int = 40, **params: object) -> xgb.Booster:
    x, y = _data(3000, 0)
    base = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 4, "nthread": 1}
    return xgb.train({**base, **params}, xgb.DMatrix(x, y, missing=np.nan), rounds)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"max_depth": 7, "base_score": 0.1},
        {"num_parallel_tree": 3, "subsample": 0.7, "colsample_bynode": 0.5},
        {"max_depth": 0, "grow_policy": "lossguide", "max_leaves": 9},
    ],
)
def test_the_walk_gives_xgboosts_probabilities(params: dict[str, object]) -> None:
    booster = _booster(**params)
    forest = Forest.from_booster(booster)
    x, _ = _data(5000, 1)
    for rounds in (0, 1, 7, 40):
        want = booster.inplace_predict(x, iteration_range=(0, rounds), missing=np.nan)
        got = forest.predict(x, rounds)
        assert got.dtype == np.float64 and got.shape == (5000,)
        assert float(np.max(np.abs(got - want))) <= 1e-6, rounds
        # the same float32 almost everywhere: glibc's expf is not always correctly rounded
        assert float(np.mean(got == want.astype(np.float64))) >= 0.995, rounds


@pytest.mark.parametrize("params", [{}, {"base_score": 0.2304}, {"num_parallel_tree": 2}])
def test_the_margin_is_xgboosts_to_the_bit(params: dict[str, object]) -> None:
    booster = _booster(**params)
    forest = Forest.from_booster(booster)
    x, _ = _data(2000, 2)
    for rounds in (0, 1, 7):
        margin = booster.inplace_predict(
            x, missing=np.nan, predict_type="margin", iteration_range=(0, rounds)
        )
        got = forest.margin(x, rounds)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, margin)
    margin = booster.inplace_predict(x, missing=np.nan, predict_type="margin")
    want = booster.inplace_predict(x, missing=np.nan)
    np.testing.assert_allclose(sigmoid(margin), want, rtol=2e-7, atol=0)
    booster = _booster()
    forest = Forest.from_booster(booster)
    assert forest.tree_count(0) == 40 and forest.tree_count(7) == 7
    assert forest.tree_count(1000) == 40
    assert 1 <= forest.depth <= 4


def test_other_objectives_are_refused() -> None:
    booster = _booster(objective="reg:squarederror")
    with pytest.raises(Unsupported, match="objective 'reg:squarederror'"):
        Forest.from_booster(booster)


def test_an_unsupported_model_keeps_xgboosts_predictor(caplog: pytest.LogCaptureFixture) -> None:
    booster = _booster(objective="reg:squarederror")
    with caplog.at_level(logging.INFO):
        assert forest_for(booster, "model v0007") is None
    assert "model v0007: scores on cuda from XGBoost's predictor" in caplog.text
    backend = CudaBackend(booster, "cpu", NUMPY_AS_CUPY, None, None)  # type: ignore[arg-type]
    assert backend.predictor == "xgboost"


def test_the_backend_uses_the_forest_where_no_kernel_can_run() -> None:
    booster = _booster()
    forest = forest_for(booster, "model v0001")
    assert forest is not None
    backend = CudaBackend(booster, "cpu", NUMPY_AS_CUPY, None, forest)  # type: ignore[arg-type]
    assert backend.predictor == "forest in numpy"
    x, _ = _data(300, 3)
    np.testing.assert_array_equal(backend.predict(x, 5, 1), forest.predict(x, 5))
    assert float(np.max(np.abs(backend.predict(x, 0, 1) - backend.xgboost_predict(x, 0)))) < 1e-6


class _EmulatedKernel:
    """``forest_predict`` as the CUDA source states it, one row at a time in Python: checks
    the arguments ``CudaForest`` hands the kernel, their order and types."""

    def __init__(self, source: str, name: str, breaks: str = "") -> None:
        assert name == "forest_predict" and f"void {name}(" in source
        self.breaks = breaks

    def __call__(self, grid: tuple[int], block: tuple[int], args: tuple[object, ...]) -> None:
        x, rows, cols, trees, roots, feature, threshold, left, right, default_left, value = args[
            :11
        ]
        base_margin, out = args[11:]
        assert isinstance(rows, np.int32) and isinstance(trees, np.int32)
        assert isinstance(base_margin, np.float32)
        assert grid[0] * block[0] >= rows > (grid[0] - 1) * block[0]
        if self.breaks == "raise":
            raise RuntimeError('nvrtc: error: identifier "isnan" is undefined\nmore')
        flat = np.asarray(x).reshape(-1)
        for row in range(int(rows)):
            margin = np.float32(base_margin)
            for t in range(int(trees)):
                node = roots[t]
                while feature[node] >= 0:
                    v = flat[row * int(cols) + feature[node]]
                    go_left = default_left[node] != 0 if np.isnan(v) else v < threshold[node]
                    node = left[node] if go_left else right[node]
                margin = np.float32(margin + value[node])
            out[row] = sigmoid(np.asarray([margin], dtype=np.float32))[0]
        if self.breaks == "wrong":
            out[0] += np.float32(0.01)


def _emulating_cupy(breaks: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        **vars(NUMPY_AS_CUPY),
        empty=np.empty,
        float32=np.float32,
        RawKernel=lambda source, name: _EmulatedKernel(source, name, breaks),
    )


def test_the_kernels_arguments_give_xgboosts_scores() -> None:
    booster = _booster(rounds=12)
    backend = CudaBackend(booster, "cpu", _emulating_cupy(), None, forest_for(booster, "m"))  # type: ignore[arg-type]
    assert backend.predictor == "forest kernel"
    x, _ = _data(300, 4)
    for trees in (0, 3):
        want = booster.inplace_predict(x, iteration_range=(0, trees), missing=np.nan)
        assert float(np.max(np.abs(backend.predict(x, trees, 1) - want))) <= 1e-6
    assert backend.predict(x[:0], 0, 1).shape == (0,)


@pytest.mark.parametrize(
    ("breaks", "why"),
    [
        ("raise", 'it failed (RuntimeError: nvrtc: error: identifier "isnan" is undefined)'),
        ("wrong", "its scores differ from XGBoost's by 0.01"),
    ],
)
def test_a_kernel_that_fails_its_proof_at_load_is_not_used(
    breaks: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    booster = _booster(rounds=5)
    with caplog.at_level(logging.WARNING):
        backend = CudaBackend(
            booster, "cpu", _emulating_cupy(breaks), None, forest_for(booster, "m")
        )  # type: ignore[arg-type]
    assert backend.predictor == "xgboost"
    assert f"cpu: the forest kernel is not used, {why}" in caplog.text
    x, _ = _data(50, 5)
    np.testing.assert_array_equal(backend.predict(x, 0, 1), backend.xgboost_predict(x, 0))


def test_the_probe_meets_every_split_on_both_sides() -> None:
    forest = Forest.from_booster(_booster())
    rows = probe_rows(forest)
    split = np.flatnonzero(forest.feature >= 0)
    v = rows[:, forest.feature[split]]
    assert np.all(np.any(v < forest.threshold[split], axis=0))
    assert np.all(np.any(v == forest.threshold[split], axis=0))
    assert np.all(np.any(np.isnan(v), axis=0))
