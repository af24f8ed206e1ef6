"""Device choice for training and scoring: ``auto``, ``cpu`` or ``cuda[:N]``.

``gpu_visible`` looks for a GPU without importing CUDA libraries (the environment, the
NVIDIA driver's ``/proc`` entries, then ``nvidia-smi -L``); ``resolve_device`` turns the
requested device into the one used, logs which and why, and refuses ``cuda`` when it
cannot work instead of silently falling back.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from features.exceptions import ConfigError
from models.exceptions import DeviceUnavailable

logger = logging.getLogger(__name__)

_CUDA_RE = re.compile(r"^cuda(:\d+)?$")
_HIDDEN = {"", "-1", "none", "nodevfiles"}
_PROC_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class GpuProbe:
    """What the GPU probe found."""

    visible: bool
    """True when at least one NVIDIA GPU is usable by this process."""
    reason: str
    """Human-readable evidence for ``visible`` (logged and printed by the CLI)."""


def probe_gpu() -> GpuProbe:
    """Look for a usable NVIDIA GPU, cheapest evidence first; never imports CUDA."""
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


def resolve_device(requested: str, *, need_cupy: bool = False) -> str:
    """Return the device to use for ``requested`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``).

    ``auto`` becomes ``cuda`` when a GPU is visible (and, with ``need_cupy``, CuPy is
    installed), else ``cpu``; the choice and its reason are logged at INFO. An explicit
    ``cuda`` that cannot work raises ``DeviceUnavailable``; any other value ``ConfigError``.
    """
    device, reason = choose_device(requested, need_cupy=need_cupy)
    logger.info("device %s -> %s: %s", requested, device, reason)
    return device


def choose_device(requested: str, *, need_cupy: bool = False) -> tuple[str, str]:
    """Like ``resolve_device`` but returns ``(device, reason)`` and logs nothing."""
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
    probe = probe_gpu()
    if not probe.visible:
        return "cpu", f"no GPU visible ({probe.reason})"
    if need_cupy and not cupy_installed():
        return "cpu", f"{probe.reason} but CuPy is missing (pip install 'fraudstream[gpu]')"
    return "cuda", probe.reason


def _require_cuda(device: str, need_cupy: bool) -> None:
    probe = probe_gpu()
    if not probe.visible:
        msg = f"device {device!r} was requested but no GPU is visible ({probe.reason}); "
        msg += "use --device cpu or --device auto"
        raise DeviceUnavailable(msg)
    if need_cupy and not cupy_installed():
        msg = f"device {device!r} needs CuPy to hand batches to the GPU; "
        msg += "install it with pip install 'fraudstream[gpu]' or use --device cpu"
        raise DeviceUnavailable(msg)
