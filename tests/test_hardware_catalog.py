"""The GPU table: lookups by user-typed and NVML names, and the user's overrides file."""

from __future__ import annotations

import pytest

from ftwizard.errors import UserError
from ftwizard.hardware import catalog


@pytest.fixture(autouse=True)
def no_user_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("FTWIZARD_GPUS", str(tmp_path / "gpus.yaml"))
    return tmp_path / "gpus.yaml"


@pytest.mark.parametrize("name,want", [
    ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
    ("NVIDIA A100 PCIe 40GB", "A100 40GB"),
    ("Tesla T4", "T4"),
    ("NVIDIA A10G", "A10G"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 3090", "RTX 3090"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA H200", "H200"),
    ("AMD Instinct MI300X", "MI300X"),
    ("h100", "H100"),
    ("rtx-4090", "RTX 4090"),
])
def test_lookup(name, want):
    assert catalog.lookup(name).name == want


def test_unknown_name():
    assert catalog.lookup("Voodoo 3") is None


def test_table_covers_the_issue_list():
    names = set(catalog.names())
    assert {"T4", "L4", "A10G", "RTX 3090", "RTX 4090", "A100 40GB", "A100 80GB", "H100", "H200", "MI300X"} <= names
    t4 = catalog.lookup("T4")
    assert not t4.supports_bf16 and t4.peak_tflops == t4.fp16_tflops
    assert catalog.lookup("H100").supports_bf16


def test_overrides_change_prices_and_add_gpus(no_user_overrides):
    no_user_overrides.write_text('H100: {price_per_hour: 1.99}\n"Lab card": {memory_gib: 48, bf16_tflops: 150, compute_capability: "8.9"}\n')
    assert catalog.lookup("H100").price_per_hour == 1.99
    lab = catalog.lookup("lab card")
    assert lab.memory_bytes == 48 * 1024**3 and lab.supports_bf16 and lab.fp16_tflops == 150


def test_bad_override_is_a_user_error(no_user_overrides):
    no_user_overrides.write_text("H100: {prize: 1}\n")
    with pytest.raises(UserError, match="unknown field"):
        catalog.catalog()
    no_user_overrides.write_text("H100: [oops\n")
    with pytest.raises(UserError, match="not valid YAML"):
        catalog.catalog()
