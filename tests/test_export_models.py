"""Real exports of tiny runs of the embedded model on CPU: every format written, loaded
back and checked by the export itself, plus independent checks here (the merged folder
and GGUF metadata read with other code paths, the data fingerprint recomputed, and the
QLoRA merge checked against the dequantised NF4 weights)."""

from __future__ import annotations

import hashlib
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


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("lora"), "lora")


@pytest.fixture(scope="module")
def converter():
    from ftwizard.export.gguf import ensure_converter

    return ensure_converter(log=lambda *_: None)  # installs once into the cache; CI should pre-install it


def test_lora_run_exports_every_format_and_each_loads_back(lora_run, converter):
    r = cli("export", str(lora_run), "--format", "adapter,merged,gguf,ollama", "--quant", "f16,q8_0",
            "--max-new-tokens", "24", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = json.loads(r.stdout)
    out = lora_run / "export"
    assert m["state"] == "completed"
    ex = m["exports"]
    assert {k: e["state"] for k, e in ex.items()} == {
        "adapter": "ok", "merged": "ok", "gguf-f16": "ok", "gguf-q8_0": "ok", "ollama": "ok", "card": "ok"}
    # each load-back check ran and passed; 16-bit ones token for token
    for key in ("adapter", "merged", "gguf-f16"):
        for c in ex[key]["checks"]:
            if "metrics" in c:
                assert c["metrics"]["identical_continuations"] == c["metrics"]["prompts"] == 3, c
                assert c["metrics"]["stopped"] == 3
    q8 = [c for c in ex["gguf-q8_0"]["checks"] if "metrics" in c][0]["metrics"]
    assert q8["top1_agreement"] >= 0.9 and q8["stopped"] == 3

    # files where the manifest says, ready for their loaders
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "merged" / "config.json").read_text())["dtype"] == "float16"
    f16, q8f = out / "gguf" / "lora-f16.gguf", out / "gguf" / "lora-q8_0.gguf"
    assert q8f.stat().st_size < 0.6 * f16.stat().st_size

    # independent: the merged folder answers like the run's reference continuation
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out / "merged"))
    model = AutoModelForCausalLM.from_pretrained(str(out / "merged"), dtype=torch.float32)
    msgs = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "What colour is sky?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=24, do_sample=False)
    assert tok.decode(gen[0, ids["input_ids"].shape[1]:]) == m["reference"]["continuations"][0]

    # independent: the GGUF's end-of-sequence id is the end-of-turn token, read with gguf's reader
    from gguf import GGUFReader

    f = GGUFReader(str(q8f)).fields["tokenizer.ggml.eos_token_id"]
    assert int(f.parts[f.data[0]][0]) == tok.convert_tokens_to_ids("<|im_end|>")

    # Modelfile beside the GGUF, and the command to run
    mf = (out / "gguf" / "Modelfile").read_text()
    assert "FROM ./lora-q8_0.gguf" in mf and 'PARAMETER stop "<|im_end|>"' in mf
    assert 'SYSTEM """Answer with one word."""' in mf
    assert ex["ollama"]["command"].startswith("ollama create lora -f ")

    # model card: base, method, data fingerprint recomputed here, software versions
    card = (out / "README.md").read_text()
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((lora_run / "config.yaml").read_text())))
    sha = hashlib.sha256(Path(cfg["data"]["train"]).read_bytes()).hexdigest()
    assert f"| train | train.jsonl | 16 |" in card and sha in card
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "| method | lora |" in card and "| lora_r | 8 |" in card and "transformers " in card

    # never overwritten without --force
    r2 = cli("export", str(lora_run), "--format", "adapter")
    assert r2.returncode == 1 and "never overwritten" in r2.stderr


def test_qlora_run_merges_into_the_dequantised_nf4_base(tmp_path):
    run = train(tmp_path, "qlora", max_steps=2)
    r = cli("export", str(run), "--format", "merged", "--max-new-tokens", "24", "--json")
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
