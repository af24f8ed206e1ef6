from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudstream.features.exceptions import ConfigError
from fraudstream.models import cli, device
from fraudstream.models.exceptions import DeviceUnavailable

BROKEN = "CUDARuntimeError: cudaErrorNoDevice: no CUDA-capable device is detected"


@pytest.fixture(autouse=True)
def fresh_probes() -> Iterator[None]:
    """Every test starts without cached probe answers or warnings, and leaves none."""
    device.forget_probes()
    yield
    device.forget_probes()


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "_PROC_GPUS", tmp_path / "no-driver")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, bool]]:
    """A machine whose nvidia-smi lists one GPU that works; returns the probes made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1234)'\n")
    smi.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "_PROC_GPUS", tmp_path / "no-driver")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(device, "cupy_installed", lambda: True)
    probes: list[tuple[str, bool]] = []

    def works(name: str, need_cupy: bool) -> str | None:
        probes.append((name, need_cupy))
        return None

    monkeypatch.setattr(device, "_try_cuda", works)
    return probes


@pytest.fixture
def broken_gpu(fake_gpu: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch) -> None:
    """nvidia-smi lists a GPU, but using it fails (a container given the driver, no device)."""

    def fails(name: str, need_cupy: bool) -> str | None:
        fake_gpu.append((name, need_cupy))
        return BROKEN

    monkeypatch.setattr(device, "_try_cuda", fails)


@pytest.mark.usefixtures("no_gpu")
def test_auto_without_gpu_picks_cpu_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fraudstream.models.device"):
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


def test_nvidia_smi_listing_a_working_gpu_makes_auto_pick_cuda(
    fake_gpu: list[tuple[str, bool]],
) -> None:
    assert device.gpu_visible() is True
    assert device.choose_device("auto") == (
        "cuda",
        "nvidia-smi -L lists 1 GPU(s); a test model trained and predicted on cuda as on the cpu",
    )
    assert device.resolve_device("CUDA:0", need_cupy=True) == "cuda:0"
    assert fake_gpu == [("cuda", False), ("cuda:0", True)]


def test_the_probe_runs_once_per_device_and_purpose(fake_gpu: list[tuple[str, bool]]) -> None:
    for _ in range(3):
        assert device.resolve_device("auto", need_cupy=True) == "cuda"
        assert device.resolve_device("cuda:1", need_cupy=True) == "cuda:1"
    assert device.resolve_device("auto") == "cuda"
    assert fake_gpu == [("cuda", True), ("cuda:1", True), ("cuda", False)]


@pytest.mark.usefixtures("broken_gpu")
def test_auto_falls_back_to_cpu_with_one_warning_when_the_gpu_does_not_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="fraudstream.models.device"):
        for _ in range(3):  # serve resolves the device again for every model it loads
            assert device.resolve_device("auto", need_cupy=True) == "cpu"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"device auto: nvidia-smi -L lists 1 GPU(s) but it does not work: {BROKEN}; using the cpu"
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert (
        infos
        == [f"device auto -> cpu: nvidia-smi -L lists 1 GPU(s) but it does not work: {BROKEN}"] * 3
    )


@pytest.mark.usefixtures("broken_gpu")
def test_explicit_cuda_that_does_not_work_is_refused_naming_why() -> None:
    with pytest.raises(DeviceUnavailable) as raised:
        device.resolve_device("cuda", need_cupy=True)
    assert str(raised.value) == (
        f"device 'cuda' was requested but does not work here ({BROKEN}); "
        "use --device cpu or --device auto"
    )


@pytest.mark.usefixtures("broken_gpu")
def test_train_with_a_broken_cuda_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="fraudstream")
    cli.register(parser.add_subparsers(dest="command", required=True))
    argv = ["train", "--data", str(tmp_path / "never-read.csv"), "--registry", str(tmp_path)]
    args = parser.parse_args([*argv, "--train-start", "2018-05-20", "--device", "cuda"])
    assert args.func(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: device 'cuda' was requested but does not work here ({BROKEN}); "
        "use --device cpu or --device auto\n"
    )


@pytest.mark.usefixtures("fake_gpu")
def test_empty_cuda_visible_devices_hides_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.gpu_visible() is False
    assert device.choose_device("auto") == (
        "cpu",
        "no GPU visible (CUDA_VISIBLE_DEVICES='' hides every GPU)",
    )


def test_auto_needing_cupy_falls_back_to_cpu_when_cupy_is_missing(
    fake_gpu: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device, "cupy_installed", lambda: False)
    chosen, reason = device.choose_device("auto", need_cupy=True)
    assert chosen == "cpu"
    assert "CuPy is missing" in reason
    with pytest.raises(DeviceUnavailable, match="needs CuPy"):
        device.resolve_device("cuda", need_cupy=True)
    assert fake_gpu == []


@pytest.mark.skipif(device.gpu_visible(), reason="a GPU is visible: the probe may pass here")
def test_the_real_probe_without_a_gpu_says_why_in_one_line() -> None:
    probe = device.probe_cuda("cuda")
    assert probe.visible is False
    assert "\n" not in probe.reason and 0 < len(probe.reason) <= 300
    # XGBoost with CUDA support warns and trains on the CPU; without it, the build says so.
    assert probe.reason in (
        "XGBoost: No visible GPU is found, setting device to CPU.",
        "this XGBoost build has no CUDA support (install the xgboost wheel, not xgboost-cpu)",
    )


@pytest.mark.parametrize(("name", "ordinal"), [("cuda", 0), ("cuda:0", 0), ("cuda:3", 3)])
def test_cuda_ordinal(name: str, ordinal: int) -> None:
    assert device.cuda_ordinal(name) == ordinal


@pytest.mark.parametrize("bad", ["gpu", "", "cuda:x", "tpu"])
def test_unknown_device_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="device must be 'auto', 'cpu' or 'cuda"):
        device.resolve_device(bad)


def test_cpu_is_always_available() -> None:
    assert device.resolve_device(" CPU ") == "cpu"
