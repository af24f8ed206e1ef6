"""Where predictions run: one XGBoost booster per thread count on CPU; on CUDA, the forest
kernel (``fraudstream.models.forest``) or XGBoost's GPU predictor with CuPy input.

A backend is built (and, on CUDA, its TreeSHAP path measured) once at load and never
mutated afterwards: XGBoost's prediction calls are thread-safe for tree models, but
``set_param`` (e.g. changing ``nthread``) during a prediction is not, so each thread count
gets its own booster instead.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from fraudstream.models.device import cuda_ordinal
from fraudstream.models.exceptions import DeviceUnavailable, ModelCorrupt
from fraudstream.models.forest import CudaForest, Forest, probe_rows
from fraudstream.models.treeshap import TreeShap, Unsupported

logger = logging.getLogger(__name__)

Batch = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]


class Backend(Protocol):
    """What the scorer needs from a device."""

    device: str
    booster: xgb.Booster
    """The primary booster, for inspection only (never mutate it)."""

    def predict(self, batch: Batch, trees: int, threads: int) -> Scores:
        """Probabilities from the first ``trees`` trees (0 = all)."""
        ...

    def contribs(self, batch: Batch, trees: int, threads: int) -> Scores:
        """SHAP contributions, shape (rows, features + 1), bias last."""
        ...


def load_booster(raw: bytes, source: str, params: dict[str, Any] | None = None) -> xgb.Booster:
    """A booster from UBJSON bytes; XGBoost's refusal becomes ``ModelCorrupt``."""
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{source} cannot be read as an XGBoost model ({first_line}); re-register it"
        raise ModelCorrupt(msg) from exc
    if params:
        booster.set_param(params)
    return booster


class CpuBackend:
    """CPU prediction with one booster for a single thread and one for all cores.

    Contributions come from ``TreeShap``'s tables (the same exact values, several times
    faster than XGBoost's per-row walk) where the model allows, from XGBoost otherwise.
    """

    device = "cpu"

    def __init__(self, raw: bytes, source: str, cores: int) -> None:
        self.cores = cores
        self._boosters = {n: load_booster(raw, source, {"nthread": n}) for n in {1, cores}}
        self.booster = self._boosters[1]
        self.tree_shap = tree_shap_for(self.booster, source)
        """Table TreeSHAP for this model, or None where XGBoost computes contributions."""

    def predict(self, batch: Batch, trees: int, threads: int) -> Scores:
        out = self._booster(threads).inplace_predict(
            batch, iteration_range=(0, trees), missing=np.nan, validate_features=False
        )
        return np.asarray(out, dtype=np.float64)

    def contribs(self, batch: Batch, trees: int, threads: int) -> Scores:
        if self.tree_shap is not None:
            return self.tree_shap.contribs(batch, trees)
        matrix = xgb.DMatrix(batch, missing=np.nan, nthread=threads)
        out = self._booster(threads).predict(
            matrix, pred_contribs=True, iteration_range=(0, trees), validate_features=False
        )
        return np.asarray(out, dtype=np.float64)

    def _booster(self, threads: int) -> xgb.Booster:
        try:
            return self._boosters[threads]
        except KeyError:
            msg = f"threads must be 1 or {self.cores}, got {threads}"
            raise ValueError(msg) from None


def forest_for(booster: xgb.Booster, source: str) -> Forest | None:
    """The booster's trees as flat arrays for the CUDA kernel, or None (logged) when the
    model has what the kernel does not evaluate: XGBoost's GPU predictor then serves it."""
    try:
        return Forest.from_booster(booster)
    except Unsupported as exc:
        logger.info("%s: scores on cuda from XGBoost's predictor (forest kernel: %s)", source, exc)
        return None


def tree_shap_for(booster: xgb.Booster, source: str) -> TreeShap | None:
    """Table TreeSHAP for ``booster``, or None (logged) where XGBoost must compute it."""
    try:
        return TreeShap(booster)
    except Unsupported as exc:
        logger.info("%s: reasons from XGBoost's TreeSHAP (no table: %s)", source, exc)
        return None


FOREST_TOLERANCE = 1e-5
"""Largest difference from XGBoost's predictor the forest kernel may show at load."""
SHAP_SIZES = (1, 16, 128, 1024)
"""Batch sizes at which the two TreeSHAP paths are timed at load: reasons are computed for
the alerted rows of a batch, at most serve's largest batch (1,024 by default). Larger
batches take the path chosen for the largest size."""
SHAP_MARGIN = 0.1
"""The GPU's TreeSHAP must be at least this much faster (relative) to be used at a size."""
SHAP_BUDGET_S = 0.02
"""Seconds of timing per path and size (at least three calls each)."""


@dataclass(frozen=True)
class ShapTiming:
    """One batch size: best-of seconds for the table TreeSHAP and for XGBoost's on the GPU."""

    rows: int
    """Batch size."""
    table_s: float
    """Seconds per batch, table TreeSHAP (CPU)."""
    gpu_s: float
    """Seconds per batch, XGBoost's GPU TreeSHAP (transfers included)."""


class CudaBackend:
    """GPU prediction: the forest kernel (``fraudstream.models.forest``) for the models it
    evaluates, given as ``forest``; otherwise XGBoost's predictor on a CuPy array.

    XGBoost's ``inplace_predict`` costs about 0.8 ms a call on the GPU whatever the batch;
    the kernel is one copy in, one launch, one copy out. With a NumPy array XGBoost would
    copy through a slower DMatrix path and warn, so for either the batch is converted with
    ``xp.asarray`` first and the result brought back with ``xp.asnumpy``, both inside
    ``xp.cuda.Device(N)`` so that ``cuda:N`` gets its arrays on device N. ``xp`` is the CuPy
    module (injectable for tests).

    Contributions come from one of two exact TreeSHAP paths, the same values either way:
    ``tree_shap``'s tables on the CPU, or XGBoost's GPU TreeSHAP. ``shap_on_gpu_from_rows``
    says from which batch size the GPU's is used; ``measure_shap`` sets it at load from
    timings of both (without a measurement, or without a table, one path is used throughout).
    """

    def __init__(
        self,
        booster: xgb.Booster,
        device: str,
        xp: ModuleType,
        tree_shap: TreeShap | None = None,
        forest: Forest | None = None,
    ) -> None:
        booster.set_param({"device": device})
        self.device = device
        self.ordinal = cuda_ordinal(device)
        self.booster = booster
        self._xp = xp
        self.cuda_forest: CudaForest | None = None
        """The forest kernel ``predict`` uses (None: ``numpy_forest`` or XGBoost's)."""
        self.numpy_forest: Forest | None = None
        """The same walk in NumPy, for a dry run whose stand-in for CuPy has no kernels."""
        if forest is not None and hasattr(xp, "RawKernel"):
            self.cuda_forest = self._proven(forest)
        else:
            self.numpy_forest = forest
        self.tree_shap = tree_shap
        self.shap_on_gpu_from_rows = 0 if tree_shap is None else sys.maxsize
        """Batches with at least this many rows get XGBoost's GPU TreeSHAP, smaller ones
        the table's (0: always the GPU's; the maximum: always the table's)."""
        self.shap_timings: tuple[ShapTiming, ...] = ()
        """The measurements behind ``shap_on_gpu_from_rows`` (empty when not measured)."""

    def _proven(self, forest: Forest) -> CudaForest | None:
        """The forest's kernel if it scores ``probe_rows`` as XGBoost's predictor does,
        whole and truncated; otherwise None, with a warning: XGBoost's predictor serves."""
        rows = probe_rows(forest)
        try:
            kernel = CudaForest(forest, self._xp, self.ordinal)
            scored = {trees: kernel.predict(rows, trees) for trees in (0, 1)}
        except Exception as exc:  # noqa: BLE001 - a kernel that cannot run is not used
            why = f"it failed ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            logger.warning("%s: the forest kernel is not used, %s", self.device, why)
            return None
        for trees, got in scored.items():
            diff = float(np.max(np.abs(got - self.xgboost_predict(rows, trees))))
            if not diff <= FOREST_TOLERANCE:
                why = f"its scores differ from XGBoost's by {diff:.3g} ({trees or 'all'} trees)"
                logger.warning("%s: the forest kernel is not used, %s", self.device, why)
                return None
        return kernel

    def predict(self, batch: Batch, trees: int, threads: int) -> Scores:
        if self.cuda_forest is not None:
            return self.cuda_forest.predict(batch, trees)
        if self.numpy_forest is not None:
            return self.numpy_forest.predict(batch, trees)
        return self.xgboost_predict(batch, trees)

    @property
    def predictor(self) -> str:
        """What ``predict`` runs: ``forest kernel``, ``forest in numpy`` or ``xgboost``."""
        if self.cuda_forest is not None:
            return "forest kernel"
        return "xgboost" if self.numpy_forest is None else "forest in numpy"

    def xgboost_predict(self, batch: Batch, trees: int) -> Scores:
        """XGBoost's GPU predictor, whatever ``predictor`` says (benchmarks compare)."""
        with self._xp.cuda.Device(self.ordinal):
            out = self.booster.inplace_predict(
                self._xp.asarray(batch),
                iteration_range=(0, trees),
                missing=np.nan,
                validate_features=False,
            )
            host = self._xp.asnumpy(out)
        return np.asarray(host, dtype=np.float64)

    def contribs(self, batch: Batch, trees: int, threads: int) -> Scores:
        if self.tree_shap is not None and batch.shape[0] < self.shap_on_gpu_from_rows:
            return self.tree_shap.contribs(batch, trees)
        return self.gpu_contribs(batch, trees)

    def gpu_contribs(self, batch: Batch, trees: int) -> Scores:
        """XGBoost's GPU TreeSHAP, whatever the batch size."""
        with self._xp.cuda.Device(self.ordinal):
            matrix = xgb.DMatrix(self._xp.asarray(batch), missing=np.nan)
            out = self.booster.predict(
                matrix, pred_contribs=True, iteration_range=(0, trees), validate_features=False
            )
            host = out.get() if hasattr(out, "get") else out  # CuPy arrays refuse np.asarray
        return np.asarray(host, dtype=np.float64)

    def measure_shap(self, num_features: int, budget_s: float = SHAP_BUDGET_S) -> None:
        """Time both TreeSHAP paths at ``SHAP_SIZES`` and use the GPU's from the smallest
        size at which it is faster by ``SHAP_MARGIN`` there and at every larger size. Called
        once at load, before the backend is shared."""
        if self.tree_shap is None:
            return
        table = self.tree_shap
        self.shap_timings = measure_shap_paths(
            lambda batch: table.contribs(batch, 0),
            lambda batch: self.gpu_contribs(batch, 0),
            num_features,
            budget_s,
        )
        self.shap_on_gpu_from_rows = gpu_from_rows(self.shap_timings)


def measure_shap_paths(
    table: Callable[[Batch], object],
    gpu: Callable[[Batch], object],
    num_features: int,
    budget_s: float = SHAP_BUDGET_S,
    sizes: Sequence[int] = SHAP_SIZES,
) -> tuple[ShapTiming, ...]:
    """Best-of timings of both paths on the same random rows (a quarter of them missing)."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(max(sizes), num_features)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.25] = np.nan
    return tuple(
        ShapTiming(size, _best_s(table, rows[:size], budget_s), _best_s(gpu, rows[:size], budget_s))
        for size in sorted(sizes)
    )


def gpu_from_rows(measured: Sequence[ShapTiming]) -> int:
    """The smallest measured size from which the GPU wins at every larger size too
    (``sys.maxsize`` when it does not win at the largest)."""
    start = sys.maxsize
    for timing in sorted(measured, key=lambda t: t.rows, reverse=True):
        if timing.gpu_s > timing.table_s * (1 - SHAP_MARGIN):
            break
        start = timing.rows
    return start


def _best_s(path: Callable[[Batch], object], batch: Batch, budget_s: float) -> float:
    path(batch)  # first call: allocation, kernel loading
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    for attempt in range(1000):
        began = time.perf_counter()
        path(batch)
        best = min(best, time.perf_counter() - began)
        if attempt >= 2 and time.perf_counter() >= deadline:
            break
    return best


def import_cupy() -> ModuleType:
    """The CuPy module, imported only when a CUDA scorer is built."""
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        msg = "scoring on cuda needs CuPy: pip install 'fraudstream[gpu]', or use --device cpu"
        raise DeviceUnavailable(msg) from exc
