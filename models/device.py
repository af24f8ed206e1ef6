"""Device choice for training and scoring: ``auto``, ``cpu`` or ``cuda[:N]``.

Two checks, cheapest first. ``probe_gpu`` looks for a GPU without importing CUDA libraries
(the environment, the NVIDIA driver's ``/proc`` entries, then ``nvidia-smi -L``). Seeing a
GPU is not being able to use it (a container that sees the driver but was given no device,
an XGBoost build without CUDA, CuPy missing or built for another CUDA), so ``probe_cuda``
then really uses it once: XGBoost trains a two-tree model there and predicts with it (from a
CuPy array when scoring), and the result must equal the CPU's. That probe runs once per
process and device. ``resolve_device`` turns the requested device into the one used: ``auto``
falls back to ``cpu`` (with one warning when a GPU was seen but does not work), an explicit
``cuda`` that cannot work raises ``DeviceUnavailable``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

from fraudstream.features.exceptions import ConfigError
from fraudstream.models.exceptions import DeviceUnavailable

logger = logging.getLogger(__name__)

_CUDA_RE = re.compile(r"^cuda(:\d+)?$")
_HIDDEN = {"", "-1", "none", "nodevfiles"}
_PROC_GPUS = Path("/proc/driver/nvidia/gpus")
_XGBOOST_LOG = re.compile(r"^(\[[\d:]+\] )?WARNING: \S+:\d+: ")
"""XGBoost's own log lines (``[time] WARNING: src/context.cc:53: No visible GPU ...``)."""
_REASON_CHARS = 300
"""A probe failure is quoted in one log or error line: its first line, this long at most."""


@dataclass(frozen=True)
class GpuProbe:
    """What a GPU probe found."""

    visible: bool
    """True when the probe found the GPU (visible, or working for ``probe_cuda``)."""
    reason: str
    """Human-readable evidence for ``visible`` (logged and printed by the CLI)."""


def probe_gpu() -> GpuProbe:
    """Look for an NVIDIA GPU, cheapest evidence first; never imports CUDA."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip().lower() in _HIDDEN:
        return GpuProbe(False, f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU")
    if _PROC_GPUS.is_dir() and any(_PROC_GPUS.iterdir()):
        return GpuProbe(True, f"NVIDIA driver lists GPUs under {_PROC_GPUS}")
    return _probe_nvidia_smi()


def _probe_nvidia_smi() -> GpuProbe:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return GpuProbe(False, "no NVIDIA driver entries and nvidia-smi is not on PATH")
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [exe, "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return GpuProbe(False, f"nvidia-smi -L failed: {exc}")
    gpus = [line for line in done.stdout.splitlines() if line.startswith("GPU ")]
    if done.returncode != 0 or not gpus:
        return GpuProbe(False, f"nvidia-smi -L found no GPU (exit {done.returncode})")
    return GpuProbe(True, f"nvidia-smi -L lists {len(gpus)} GPU(s)")


def gpu_visible() -> bool:
    """True when an NVIDIA GPU is visible; honours ``CUDA_VISIBLE_DEVICES=""``."""
    return probe_gpu().visible


def cupy_installed() -> bool:
    """True when CuPy (the optional ``gpu`` extra) can be imported; does not import it."""
    return importlib.util.find_spec("cupy") is not None


def cuda_ordinal(device: str) -> int:
    """The device number of ``cuda`` (0) or ``cuda:N`` (N)."""
    _, _, number = device.partition(":")
    return int(number) if number else 0


_probes: dict[tuple[str, bool, str | None], str | None] = {}
_warned: set[tuple[str, bool, str | None]] = set()
_probe_lock = threading.Lock()


def probe_cuda(device: str = "cuda", need_cupy: bool = False) -> GpuProbe:
    """Use ``device`` once: train two trees there, predict (from a CuPy array with
    ``need_cupy``), compare with the CPU. Runs once per process for each device, ``need_cupy``
    and ``CUDA_VISIBLE_DEVICES``; later calls return the first answer."""
    key = (device, need_cupy, os.environ.get("CUDA_VISIBLE_DEVICES"))
    with _probe_lock:
        if key not in _probes:
            _probes[key] = _try_cuda(device, need_cupy)
        failure = _probes[key]
    if failure is not None:
        return GpuProbe(False, failure)
    what = "from a CuPy array " if need_cupy else ""
    return GpuProbe(True, f"a test model trained and predicted {what}on {device} as on the cpu")


def forget_probes() -> None:
    """Drop the cached ``probe_cuda`` answers and warnings (tests)."""
    with _probe_lock:
        _probes.clear()
        _warned.clear()


def _try_cuda(device: str, need_cupy: bool) -> str | None:
    """None when ``device`` works, else why not (one line)."""
    if not xgb.build_info().get("USE_CUDA"):
        return "this XGBoost build has no CUDA support (install the xgboost wheel, not xgboost-cpu)"
    x = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(32, 2)
    y = (x[:, 0] > 0.5).astype(np.float32)
    try:
        cupy = _cupy_for(device) if need_cupy else None  # before XGBoost meets a bad ordinal
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # XGBoost warns, and trains on the CPU, without a GPU
            booster = xgb.train(_PROBE_PARAMS | {"device": device}, xgb.DMatrix(x, y), 2)
            if cupy is None:
                got = _predict(booster, x)
            else:
                with cupy.cuda.Device(cuda_ordinal(device)):
                    out = booster.inplace_predict(cupy.asarray(x))
                    got = np.asarray(cupy.asnumpy(out), dtype=np.float64)
            booster.set_param({"device": "cpu"})
            want = _predict(booster, x)
    except Exception as exc:  # noqa: BLE001 - any failure means the device does not work
        return _one_line(f"{type(exc).__name__}: {exc}")
    complaints = [w for w in caught if _XGBOOST_LOG.search(str(w.message))]
    for other in caught:  # not about the device: raised again as they came
        if other not in complaints:
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    if complaints:
        said = _XGBOOST_LOG.sub("", str(complaints[0].message), count=1)
        return _one_line(f"XGBoost: {said}")
    if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=1e-6):
        return f"a test prediction on {device} differs from the cpu's"
    return None


_PROBE_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "max_depth": 2,
    "nthread": 1,
}


def _predict(booster: xgb.Booster, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    return np.asarray(booster.predict(xgb.DMatrix(x)), dtype=np.float64)


def _cupy_for(device: str) -> ModuleType:
    """CuPy, once it is known to see ``device``."""
    cupy = importlib.import_module("cupy")
    count = int(cupy.cuda.runtime.getDeviceCount())
    if cuda_ordinal(device) >= count:
        msg = f"CuPy sees {count} GPU(s), so there is no {device}"
        raise DeviceUnavailable(msg)
    return cupy


def _one_line(text: str) -> str:
    first = (text.strip().splitlines() or [""])[0]
    return first if len(first) <= _REASON_CHARS else first[: _REASON_CHARS - 3] + "..."


def resolve_device(requested: str, *, need_cupy: bool = False) -> str:
    """Return the device to use for ``requested`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``).

    ``auto`` becomes ``cuda`` when a GPU is visible and works (with ``need_cupy``, from CuPy
    arrays), else ``cpu``; the choice and its reason are logged at INFO, and a GPU that is
    seen but does not work is also one WARNING per process. An explicit ``cuda`` that cannot
    work raises ``DeviceUnavailable``; any other value ``ConfigError``.
    """
    device, reason = choose_device(requested, need_cupy=need_cupy)
    logger.info("device %s -> %s: %s", requested, device, reason)
    return device


def choose_device(requested: str, *, need_cupy: bool = False) -> tuple[str, str]:
    """Like ``resolve_device`` but returns ``(device, reason)`` (and logs only the warning)."""
    wanted = requested.strip().lower()
    if wanted == "cpu":
        return "cpu", "cpu was requested"
    if wanted == "auto":
        return _choose_auto(need_cupy)
    if _CUDA_RE.match(wanted):
        _require_cuda(wanted, need_cupy)
        return wanted, f"{wanted} was requested"
    msg = f"device must be 'auto', 'cpu' or 'cuda[:N]', got {requested!r}"
    raise ConfigError(msg)


def _choose_auto(need_cupy: bool) -> tuple[str, str]:
    seen = probe_gpu()
    if not seen.visible:
        return "cpu", f"no GPU visible ({seen.reason})"
    if need_cupy and not cupy_installed():
        why = "CuPy is missing (pip install 'fraudstream[gpu]')"
    else:
        works = probe_cuda("cuda", need_cupy)
        if works.visible:
            return "cuda", f"{seen.reason}; {works.reason}"
        why = f"it does not work: {works.reason}"
    _warn_once(need_cupy, f"{seen.reason} but {why}; using the cpu")
    return "cpu", f"{seen.reason} but {why}"


def _warn_once(need_cupy: bool, message: str) -> None:
    key = ("auto", need_cupy, os.environ.get("CUDA_VISIBLE_DEVICES"))
    with _probe_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning("device auto: %s", message)


def _require_cuda(device: str, need_cupy: bool) -> None:
    seen = probe_gpu()
    if not seen.visible:
        msg = f"device {device!r} was requested but no GPU is visible ({seen.reason}); "
        msg += "use --device cpu or --device auto"
        raise DeviceUnavailable(msg)
    if need_cupy and not cupy_installed():
        msg = f"device {device!r} needs CuPy to hand batches to the GPU; "
        msg += "install it with pip install 'fraudstream[gpu]' or use --device cpu"
        raise DeviceUnavailable(msg)
    works = probe_cuda(device, need_cupy)
    if not works.visible:
        msg = f"device {device!r} was requested but does not work here ({works.reason}); "
        msg += "use --device cpu or --device auto"
        raise DeviceUnavailable(msg)
