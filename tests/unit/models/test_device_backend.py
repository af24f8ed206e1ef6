"""The CUDA backend without a GPU: a fake CuPy records on which device each array is made,
and a fake booster stands in for XGBoost on the GPU."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.models.backend import CudaBackend, ShapTiming, gpu_from_rows, measure_shap_paths
from fraudstream.models.treeshap import TreeShap
from tests.unit.models.conftest import NAMES, synthetic


class FakeDeviceArray:
    def __init__(self, host: np.ndarray, device: int) -> None:
        self.host = host
        self.device = device

    def get(self) -> np.ndarray:
        return self.host


class FakeCupy:
    """``asarray``, ``asnumpy`` and ``cuda.Device(n)`` as CuPy has them; device 0 is current."""

    def __init__(self) -> None:
        self.current = 0
        self.cuda = SimpleNamespace(Device=self._device)

    @contextmanager
    def _device(self, ordinal: int) -> Iterator[None]:
        before, self.current = self.current, ordinal
        try:
            yield
        finally:
            self.current = before

    def asarray(self, host: np.ndarray) -> FakeDeviceArray:
        return FakeDeviceArray(np.asarray(host), self.current)

    def asnumpy(self, array: FakeDeviceArray) -> np.ndarray:
        assert array.device == self.current, "copied back from another device"
        return array.host


class FakeGpuBooster:
    """Takes device arrays only; predicts by the CPU booster it wraps; records its inputs."""

    def __init__(self, real: xgb.Booster) -> None:
        self.real = real
        self.params: dict[str, Any] = {}
        self.devices: list[int] = []
        self.contrib_rows: list[int] = []

    def set_param(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def inplace_predict(self, data: Any, iteration_range: tuple[int, int], **_: Any) -> Any:
        assert isinstance(data, FakeDeviceArray), "a NumPy array reached the GPU booster"
        self.devices.append(data.device)
        out = self.real.inplace_predict(data.host, iteration_range=iteration_range)
        return FakeDeviceArray(out, data.device)

    def predict(self, matrix: xgb.DMatrix, **kwargs: Any) -> np.ndarray:
        self.contrib_rows.append(matrix.num_row())
        return np.asarray(self.real.predict(matrix, **kwargs))


@pytest.fixture
def gpu_booster(booster: xgb.Booster, monkeypatch: pytest.MonkeyPatch) -> FakeGpuBooster:
    monkeypatch.setattr(xgb, "DMatrix", _dmatrix_taking_device_arrays(xgb.DMatrix))
    return FakeGpuBooster(booster)


def _dmatrix_taking_device_arrays(real: Any) -> Any:
    def build(data: Any, *args: Any, **kwargs: Any) -> xgb.DMatrix:
        host = data.host if isinstance(data, FakeDeviceArray) else data
        return real(host, *args, **kwargs)

    return build


def test_cuda_n_makes_the_batch_and_reads_the_result_on_device_n(
    gpu_booster: FakeGpuBooster, booster: xgb.Booster
) -> None:
    xp = FakeCupy()
    backend = CudaBackend(gpu_booster, "cuda:1", xp)  # type: ignore[arg-type]
    x = synthetic(5)[0]
    scores = backend.predict(x, 0, 1)
    assert gpu_booster.params == {"device": "cuda:1"}
    assert gpu_booster.devices == [1]
    assert xp.current == 0, "the device is restored after the call"
    np.testing.assert_array_equal(scores, booster.inplace_predict(x).astype(np.float64))
    CudaBackend(gpu_booster, "cuda", xp).predict(x, 0, 1)  # type: ignore[arg-type]
    assert gpu_booster.devices == [1, 0]


def test_contributions_take_the_table_below_the_measured_size_and_the_gpu_from_it(
    gpu_booster: FakeGpuBooster, booster: xgb.Booster
) -> None:
    backend = CudaBackend(gpu_booster, "cuda:1", FakeCupy(), TreeShap(booster))  # type: ignore[arg-type]
    x = synthetic(40)[0]
    x[::3, 4] = np.nan
    table_only = backend.contribs(x, 0, 1)  # not measured: the table at every size
    assert gpu_booster.contrib_rows == []
    backend.shap_on_gpu_from_rows = 16
    small = backend.contribs(x[:15], 0, 1)
    assert gpu_booster.contrib_rows == []
    large = backend.contribs(x, 0, 1)
    assert gpu_booster.contrib_rows == [40]
    truncated = backend.contribs(x, 5, 1)
    assert gpu_booster.contrib_rows == [40, 40]
    want = booster.predict(xgb.DMatrix(x, feature_names=list(NAMES)), pred_contribs=True)
    for got in (table_only, large):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(small, want[:15], rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(
        truncated,
        booster.predict(
            xgb.DMatrix(x, feature_names=list(NAMES)), pred_contribs=True, iteration_range=(0, 5)
        ),
        rtol=1e-5,
        atol=2e-5,
    )


def test_without_a_table_every_size_goes_to_the_gpu(gpu_booster: FakeGpuBooster) -> None:
    backend = CudaBackend(gpu_booster, "cuda", FakeCupy())  # type: ignore[arg-type]
    assert backend.shap_on_gpu_from_rows == 0
    backend.contribs(synthetic(1)[0], 0, 1)
    backend.measure_shap(len(NAMES))  # nothing to choose between
    assert gpu_booster.contrib_rows == [1]
    assert backend.shap_timings == ()


def test_measuring_times_both_paths_at_every_size_and_applies_the_rule(
    gpu_booster: FakeGpuBooster, booster: xgb.Booster
) -> None:
    backend = CudaBackend(gpu_booster, "cuda", FakeCupy(), TreeShap(booster))  # type: ignore[arg-type]
    backend.measure_shap(len(NAMES), budget_s=0.0)
    sizes = [t.rows for t in backend.shap_timings]
    assert sizes == [1, 16, 128, 1024]
    assert all(t.table_s > 0 and t.gpu_s > 0 for t in backend.shap_timings)
    assert backend.shap_on_gpu_from_rows == gpu_from_rows(backend.shap_timings)
    # Each size: one warm-up call and three timed ones, on the GPU path.
    assert gpu_booster.contrib_rows == [n for n in sizes for _ in range(4)]


def test_measure_shap_paths_hands_each_path_the_same_rows() -> None:
    seen: dict[str, list[np.ndarray]] = {"table": [], "gpu": []}
    measure_shap_paths(
        lambda b: seen["table"].append(b.copy()),
        lambda b: seen["gpu"].append(b.copy()),
        3,
        budget_s=0.0,
        sizes=(2, 5),
    )
    assert [b.shape for b in seen["table"]] == [(2, 3)] * 4 + [(5, 3)] * 4
    for table, gpu in zip(seen["table"], seen["gpu"], strict=True):
        np.testing.assert_array_equal(table, gpu)
    assert np.isnan(seen["table"][-1]).any(), "some features missing, as in serve's batches"


def timings(*pairs: tuple[float, float]) -> list[ShapTiming]:
    return [ShapTiming(rows, t, g) for rows, (t, g) in zip((1, 16, 128, 1024), pairs, strict=True)]


@pytest.mark.parametrize(
    ("measured", "start"),
    [
        (timings((1, 9), (2, 9), (8, 4), (60, 5)), 128),
        (timings((1, 9), (2, 9), (8, 9), (60, 59)), sys.maxsize),  # within the margin: table
        (timings((9, 1), (9, 2), (9, 3), (60, 5)), 1),
        (timings((9, 1), (2, 9), (8, 4), (60, 5)), 128),  # wins at 1 but not at 16
        (timings((1, 9), (2, 9), (8, 9), (6, 9)), sys.maxsize),
    ],
)
def test_the_gpu_is_used_from_the_size_where_it_keeps_winning(
    measured: list[ShapTiming], start: int
) -> None:
    assert gpu_from_rows(measured) == start
