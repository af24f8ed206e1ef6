"""Where predictions run: one XGBoost booster per thread count on CPU, CuPy input on CUDA.

A backend is built once at load and never mutated afterwards: XGBoost's prediction calls
are thread-safe for tree models, but ``set_param`` (e.g. changing ``nthread``) during a
prediction is not, so each thread count gets its own booster instead.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from models.exceptions import DeviceUnavailable, ModelCorrupt
from models.treeshap import TreeShap, Unsupported

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
        self.tree_shap = _tree_shap(self.booster, source)
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


def _tree_shap(booster: xgb.Booster, source: str) -> TreeShap | None:
    try:
        return TreeShap(booster)
    except Unsupported as exc:
        logger.info("%s: reasons from XGBoost's TreeSHAP (no table: %s)", source, exc)
        return None


class CudaBackend:
    """GPU prediction: the batch goes to the device as a CuPy array.

    With a NumPy array XGBoost would copy through a slower DMatrix path and warn, so the
    batch is converted with ``xp.asarray`` first and the result brought back with
    ``xp.asnumpy``. ``xp`` is the CuPy module (injectable for tests).
    """

    def __init__(self, booster: xgb.Booster, device: str, xp: ModuleType) -> None:
        booster.set_param({"device": device})
        self.device = device
        self.booster = booster
        self._xp = xp

    def predict(self, batch: Batch, trees: int, threads: int) -> Scores:
        on_device = self._xp.asarray(batch)
        out = self.booster.inplace_predict(
            on_device, iteration_range=(0, trees), missing=np.nan, validate_features=False
        )
        return np.asarray(self._xp.asnumpy(out), dtype=np.float64)

    def contribs(self, batch: Batch, trees: int, threads: int) -> Scores:
        matrix = xgb.DMatrix(self._xp.asarray(batch), missing=np.nan)
        out = self.booster.predict(
            matrix, pred_contribs=True, iteration_range=(0, trees), validate_features=False
        )
        host = out.get() if hasattr(out, "get") else out  # CuPy arrays refuse np.asarray
        return np.asarray(host, dtype=np.float64)


def import_cupy() -> ModuleType:
    """The CuPy module, imported only when a CUDA scorer is built."""
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        msg = "scoring on cuda needs CuPy: pip install 'fraudstream[gpu]', or use --device cpu"
        raise DeviceUnavailable(msg) from exc
