from __future__ import annotations

import logging
from pathlib import Path

import pytest

from features.exceptions import ConfigError
from models import device
from models.exceptions import DeviceUnavailable


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "_PROC_GPUS", tmp_path / "no-driver")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine whose nvidia-smi lists one GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1234)'\n")
    smi.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "_PROC_GPUS", tmp_path / "no-driver")
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.mark.usefixtures("no_gpu")
def test_auto_without_gpu_picks_cpu_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="models.device"):
        assert device.resolve_device("auto") == "cpu"
    assert caplog.messages == [
        "device auto -> cpu: no GPU visible (no NVIDIA driver entries and nvidia-smi is not "
        "on PATH)"
    ]
    assert device.gpu_visible() is False


@pytest.mark.usefixtures("no_gpu")
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailable, match="'cuda' was requested but no GPU is visible"):
        device.resolve_device("cuda")
    with pytest.raises(DeviceUnavailable, match="use --device cpu"):
        device.resolve_device("cuda:1")


@pytest.mark.usefixtures("fake_gpu")
def test_nvidia_smi_listing_a_gpu_makes_auto_pick_cuda() -> None:
    assert device.gpu_visible() is True
    assert device.choose_device("auto") == ("cuda", "nvidia-smi -L lists 1 GPU(s)")
    assert device.resolve_device("CUDA:0") == "cuda:0"


@pytest.mark.usefixtures("fake_gpu")
def test_empty_cuda_visible_devices_hides_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.gpu_visible() is False
    assert device.choose_device("auto") == (
        "cpu",
        "no GPU visible (CUDA_VISIBLE_DEVICES='' hides every GPU)",
    )


@pytest.mark.usefixtures("fake_gpu")
def test_auto_needing_cupy_falls_back_to_cpu_when_cupy_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(device, "cupy_installed", lambda: False)
    chosen, reason = device.choose_device("auto", need_cupy=True)
    assert chosen == "cpu"
    assert "CuPy is missing" in reason
    with pytest.raises(DeviceUnavailable, match="needs CuPy"):
        device.resolve_device("cuda", need_cupy=True)


@pytest.mark.parametrize("bad", ["gpu", "", "cuda:x", "tpu"])
def test_unknown_device_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="device must be 'auto', 'cpu' or 'cuda"):
        device.resolve_device(bad)


def test_cpu_is_always_available() -> None:
    assert device.resolve_device(" CPU ") == "cpu"
