"""Real exports of tiny runs of the embedded model on CPU, for the methods other than LoRA
(LoRA is in test_export_consistency.py): a full fine-tune exported from a relative run path,
and a QLoRA merge checked against the dequantised NF4 weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_config

# generous limit: on a shared, loaded 2-core box one export took ~10 min of wall time
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True, timeout=timeout)


def train(tmp: Path, method: str, **training) -> Path:
    cfg = tiny_config(tmp, method, save_every=0, **training)
    r = cli("train", str(cfg), "--name", method)
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp / "runs" / method


def test_full_fine_tune_exports_merged_gguf_and_ollama_with_a_relative_run_path(tmp_path):
    """A full fine-tune: merged is the trained model itself; GGUF and Modelfile as for LoRA. The run is
    given relative to the working folder, as a user types it (the converter runs in another folder)."""
    train(tmp_path, "full", max_steps=2)
    r = subprocess.run([sys.executable, "-m", "ftwizard", "export", "./runs/full", "--format", "all", "--quant", "f16",
                        "--json"], capture_output=True, text=True, timeout=1800, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = json.loads(r.stdout)
    ex = m["exports"]
    # no adapter, no GGUF LoRA: said once in the log, not exported
    assert set(ex) == {"merged", "gguf-f16", "ollama", "card"}, ex.keys()
    assert all(e["state"] == "ok" for e in ex.values()), {k: e.get("reason") for k, e in ex.items()}
    assert "the trained model itself" in ex["merged"]["note"]
    reload = [c for c in ex["merged"]["checks"] if "metrics" in c][0]["metrics"]
    assert reload["identical_continuations"] == reload["prompts"]
    # independent: the merged weights are the run's model/ weights (fp32 on the CPU: bit for bit)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "runs" / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "runs" / "full" / "export" / "merged" / "model.safetensors"))
    k = "model.layers.0.self_attn.q_proj.weight"
    assert (a[k].float() == b[k].float()).all()
    assert (tmp_path / "runs" / "full" / "export" / "gguf" / "full-f16.gguf").is_file()
    assert m["consistency"]["consistent"], m["consistency"]


def test_qlora_run_merges_into_the_dequantised_nf4_base(tmp_path):
    run = train(tmp_path, "qlora", max_steps=2)
    r = cli("export", str(run), "--format", "merged", "--dtype", "fp16", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = json.loads(r.stdout)
    e = m["exports"]["merged"]
    assert e["state"] == "ok" and "dequantised NF4" in e["note"]
    assert all(c["ok"] for c in e["checks"]) and "NF4" in e["checks"][0]["name"]

    # independent: merged q_proj == dequant(NF4(W)) + (alpha/r) B A, and not W + (alpha/r) B A
    import bitsandbytes.functional as bnbf
    import torch
    from safetensors.torch import load_file

    from ftwizard.models.embedded import ensure_cached

    base = load_file(str(ensure_cached() / "model.safetensors"))
    merged = load_file(str(run / "export" / "merged" / "model.safetensors"))
    ad = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    key = "model.layers.0.self_attn.q_proj"
    w = base[f"{key}.weight"].float()
    q, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    w_nf4 = bnbf.dequantize_4bit(q, state).float()
    a = next(v for k, v in ad.items() if k.endswith(f"{key}.lora_A.weight")).float()
    b = next(v for k, v in ad.items() if k.endswith(f"{key}.lora_B.weight")).float()
    delta = (16 / 8) * b @ a
    got = merged[f"{key}.weight"].float()
    err_nf4 = float((got - (w_nf4 + delta)).abs().max())
    err_plain = float((got - (w + delta)).abs().max())
    # fp16 storage rounds |w| < 8 by up to 2e-3; NF4's own error is ~100x that
    assert err_nf4 < 5e-3 and err_plain > 0.05, (err_nf4, err_plain)
