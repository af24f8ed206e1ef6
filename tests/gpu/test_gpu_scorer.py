"""The scorer on CUDA against the same model on the CPU: scores within 1e-5, the same
decisions, the forest kernel against XGBoost's GPU predictor, the same reasons by either
TreeSHAP path, and cuda:N on device N."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest

from fraudstream.features.definitions import TRANSACTION_LEVEL_NAMES
from fraudstream.models.backend import SHAP_SIZES, CudaBackend, gpu_from_rows
from fraudstream.models.device import resolve_device
from fraudstream.models.exceptions import DeviceUnavailable
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer

pytestmark = pytest.mark.gpu

SCORE_TOLERANCE = 1e-5
"""Largest difference allowed between a cuda and a cpu score."""
SHAP_RTOL, SHAP_ATOL = 1e-5, 2e-5
"""Contributions: the table TreeSHAP's tolerance against XGBoost's (tests/unit/models)."""


def batch_of(features: npt.NDArray[np.float32], rows: int, partial: bool = False) -> np.ndarray:
    """``rows`` feature rows spread evenly over the whole world (its first days alone are
    scored almost all above the review threshold: the customers' windows are still empty)."""
    picked = features[np.linspace(0, len(features) - 1, rows).astype(np.int64)].copy()
    if partial:  # the partial-features rung: every store feature missing
        picked[:, len(TRANSACTION_LEVEL_NAMES) :] = np.nan
    return picked


@pytest.mark.parametrize("rows", [1, 64, 1024, 4096, 16384])
def test_scores_and_decisions_on_cuda_equal_the_cpus(
    cpu_scorer: Scorer, cuda_scorer: Scorer, features: npt.NDArray[np.float32], rows: int
) -> None:
    truncated = cpu_scorer.truncation_trees or max(1, cpu_scorer.num_trees // 4)
    for partial in (False, True):
        batch = batch_of(features, rows, partial)
        for trees in (None, truncated):
            want = cpu_scorer.score(batch, trees)
            got = cuda_scorer.score(batch, trees)
            assert got.shape == want.shape == (rows,)
            assert float(np.max(np.abs(got - want))) <= SCORE_TOLERANCE, (partial, trees)
            np.testing.assert_array_equal(cuda_scorer.decide(got), cpu_scorer.decide(want))


@pytest.mark.parametrize("rows", [1, 255, 257, 4096])
def test_the_forest_kernel_scores_as_xgboosts_own_gpu_predictor(
    cuda_scorer: Scorer, features: npt.NDArray[np.float32], rows: int
) -> None:
    """The scorer's path on cuda against XGBoost's ``inplace_predict`` on the same device:
    whole model and truncated, rows with missing features, partial blocks of threads."""
    backend = cuda_scorer._backend
    assert isinstance(backend, CudaBackend)
    assert backend.predictor in ("forest kernel", "forest in numpy"), backend.predictor
    batch = batch_of(features, rows)
    batch[::3, 5] = np.nan
    for trees in (0, 1, max(1, cuda_scorer.num_trees // 4)):
        want = backend.xgboost_predict(batch, trees)
        got = backend.predict(batch, trees, 1)
        assert got.shape == want.shape == (rows,)
        assert float(np.max(np.abs(got - want))) <= SCORE_TOLERANCE, trees


def test_the_forest_kernel_runs_on_a_real_device(cuda_scorer: Scorer) -> None:
    pytest.importorskip("cupy", reason="the dry run has no CuPy")
    backend = cuda_scorer._backend
    assert isinstance(backend, CudaBackend)
    assert backend.predictor == "forest kernel"


def test_the_batches_reach_every_decision(
    cpu_scorer: Scorer, features: npt.NDArray[np.float32]
) -> None:
    """The comparison above is only worth something if the world has reviews and declines."""
    codes = cpu_scorer.decide(cpu_scorer.score(batch_of(features, 16384)))
    assert set(np.unique(codes).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("rows", [1, 16, 128, 1024])
def test_both_treeshap_paths_on_cuda_give_the_cpus_contributions(
    cpu_scorer: Scorer, cuda_scorer: Scorer, features: npt.NDArray[np.float32], rows: int
) -> None:
    backend = cuda_scorer._backend
    assert isinstance(backend, CudaBackend)
    assert backend.tree_shap is not None, "the default model has a table"
    batch = batch_of(features[::7], rows)
    batch[::5, 3] = np.nan
    for trees in (0, max(1, cpu_scorer.num_trees // 4)):
        want = cpu_scorer._backend.contribs(batch, trees, 1)
        table = backend.tree_shap.contribs(batch, trees)
        on_gpu = backend.gpu_contribs(batch, trees)
        np.testing.assert_allclose(table, want, rtol=SHAP_RTOL, atol=SHAP_ATOL)
        np.testing.assert_allclose(on_gpu, want, rtol=SHAP_RTOL, atol=SHAP_ATOL)


def test_reasons_on_cuda_name_the_cpus_features(
    cpu_scorer: Scorer, cuda_scorer: Scorer, features: npt.NDArray[np.float32]
) -> None:
    batch = batch_of(features[::3], 2048)
    want = cpu_scorer.reasons(batch)
    got = cuda_scorer.reasons(batch)
    assert len(got) == len(want) == 2048
    assert sum(len(r) for r in want) > 2048, "most rows have reasons"
    for row, (a, b) in enumerate(zip(got, want, strict=True)):
        assert same_reasons(a, b), (row, a, b)


def same_reasons(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = 1e-4) -> bool:
    """Equal lists of (feature, contribution), except where two contributions within ``tol``
    of each other swap places or one within ``tol`` of zero is left out."""
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b):
            extra = b[i] if i >= len(a) else a[i]
            if extra[1] > tol:
                return False
            continue
        if abs(a[i][1] - b[i][1]) > tol:
            return False
        if a[i][0] != b[i][0] and not _tied(a, b, i, tol):
            return False
    return True


def _tied(a: list[tuple[str, float]], b: list[tuple[str, float]], i: int, tol: float) -> bool:
    swapped = [j for j in range(len(b)) if b[j][0] == a[i][0]]
    return bool(swapped) and abs(b[swapped[0]][1] - a[i][1]) <= tol


def test_the_reasons_path_was_measured_at_load(cuda_scorer: Scorer) -> None:
    backend = cuda_scorer._backend
    assert isinstance(backend, CudaBackend)
    assert [t.rows for t in backend.shap_timings] == list(SHAP_SIZES)
    assert all(t.table_s > 0 and t.gpu_s > 0 for t in backend.shap_timings)
    assert backend.shap_on_gpu_from_rows == gpu_from_rows(backend.shap_timings)
    for t in backend.shap_timings:  # in the check's log (pytest -rA shows captured output)
        print(f"reasons at {t.rows} rows: table {t.table_s * 1e3:.3f} ms, gpu {t.gpu_s * 1e3:.3f}")


def test_cuda_n_scores_on_device_n(
    gpu_registry: Registry, cpu_scorer: Scorer, features: npt.NDArray[np.float32]
) -> None:
    cupy = pytest.importorskip("cupy", reason="the dry run has no CuPy")
    last = int(cupy.cuda.runtime.getDeviceCount()) - 1
    scorer = Scorer.load(gpu_registry, None, f"cuda:{last}")
    made_on: list[int] = []
    real_asarray = cupy.asarray

    def recording(data: object) -> object:
        made_on.append(int(cupy.cuda.Device().id))
        return real_asarray(data)

    backend = scorer._backend
    assert isinstance(backend, CudaBackend)
    assert backend.cuda_forest is not None
    assert {int(a.device.id) for a in backend.cuda_forest._arrays} == {last}
    recording_cupy = SimpleNamespace(
        asarray=recording,
        cuda=cupy.cuda,
        asnumpy=cupy.asnumpy,
        empty=cupy.empty,
        float32=cupy.float32,
    )
    backend._xp = backend.cuda_forest._xp = recording_cupy
    batch = batch_of(features, 256)
    got = scorer.score(batch)
    assert made_on == [last], "the forest kernel's batch"
    assert float(np.max(np.abs(got - cpu_scorer.score(batch)))) <= SCORE_TOLERANCE
    got = backend.xgboost_predict(batch, 0)
    assert made_on == [last, last], "XGBoost's predictor's batch"
    assert float(np.max(np.abs(got - cpu_scorer.score(batch)))) <= SCORE_TOLERANCE


def test_a_cuda_ordinal_past_the_last_gpu_is_refused_in_one_line() -> None:
    cupy = pytest.importorskip("cupy", reason="the dry run has no CuPy")
    missing = f"cuda:{int(cupy.cuda.runtime.getDeviceCount())}"
    with pytest.raises(DeviceUnavailable) as raised:
        resolve_device(missing, need_cupy=True)
    message = str(raised.value)
    assert message.startswith(f"device '{missing}' was requested but does not work here (")
    assert "\n" not in message
