"""GPU detection and the sampler. There is no GPU or driver on the CI machine, so the
no-NVML path is exercised for real here; GPU-only checks run where CUDA exists."""

from __future__ import annotations

import json

import pytest

from ftwizard.cli import main
from ftwizard.hardware.gpus import Sampler, detect


def _has_nvml_gpu() -> bool:
    return bool(detect().gpus)


def test_detect_never_crashes_and_reports_cpu():
    d = detect()
    assert d.cpu.cores >= 1 and d.cpu.ram_total > 0
    if not d.gpus:
        assert d.message and "\n" not in d.message
    data = d.to_dict()
    assert set(data) == {"gpus", "driver_version", "cuda_version", "nvml_version", "message", "cpu"}


def test_sampler_falls_back_to_process_memory():
    with Sampler() as s:
        a = s.sample()
        b = s.sample()
    assert a.process_rss > 0 and b.time >= a.time
    if not s.has_gpu:
        assert a.gpus == [] and a.memory_used == a.process_rss


def test_gpus_command_plain_and_json(capsys):
    assert main(["gpus"]) == 0
    out = capsys.readouterr().out
    if not _has_nvml_gpu():
        assert out.startswith("No GPU:") and "cores" in out and "RAM" in out
    assert main(["gpus", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["cores"] >= 1 and isinstance(data["gpus"], list)


def test_nvml_error_becomes_a_message(monkeypatch):
    """A broken driver (NVMLError at init) is a one-line message, not a crash."""
    import pynvml

    def boom():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", boom)
    d = detect()
    assert d.gpus == [] and "driver" in d.message.lower()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_nvml_gpu(), reason="needs an NVIDIA GPU with a driver")
def test_detects_real_gpu():
    d = detect()
    g = d.gpus[0]
    assert g.memory_total > 0 and g.memory_used <= g.memory_total
    assert d.driver_version and g.compute_capability
    with Sampler() as s:
        sample = s.sample()
    assert sample.gpus and sample.gpus[0]["memory_total"] == g.memory_total
