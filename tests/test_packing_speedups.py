"""Which speed-ups a run gets (padding-free, Liger, FlashAttention), and what the estimator
says each is worth. Pure logic: on this CPU neither kernel package is installed, so the
decision is tested with `have=` standing in for what find_spec would report."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftwizard.hardware.estimate import EstimateInput, estimate, speedup_savings
from ftwizard.training.speedups import choose_speedups, installed

NONE = {"liger_kernel": False, "flash_attn": False, "flash_attn_interface": False}
ALL = {"liger_kernel": True, "flash_attn": True, "flash_attn_interface": True}
GPU = dict(device="cuda", precision="bf16", model_type="llama", batch_size=4)


def test_cpu_gets_padding_free_and_nothing_else():
    s = choose_speedups(device="cpu", precision="fp32", model_type="llama", batch_size=4, have=ALL)
    assert s.padding_free and not s.liger and s.attention == "sdpa"
    assert any("CUDA only" in n for n in s.not_used)


def test_gpu_with_everything_installed_uses_everything():
    hopper = choose_speedups(**GPU, have=ALL, cuda_capability=(9, 0))
    assert hopper.padding_free and hopper.liger and hopper.attention == "flash_attention_3"
    ampere = choose_speedups(**GPU, have=ALL, cuda_capability=(8, 0))
    assert ampere.attention == "flash_attention_2"  # FA3 needs Hopper
    assert len(ampere.used) == 3 and ampere.not_used == []


def test_missing_packages_are_named_with_what_installing_them_does():
    s = choose_speedups(**GPU, have=NONE, cuda_capability=(9, 0))
    assert not s.liger and s.attention == "sdpa"
    text = " ".join(s.not_used)
    assert "pip install liger-kernel" in text and "pip install flash-attn" in text


@pytest.mark.parametrize("kw, why", [
    (dict(precision="fp32"), "bf16 or fp16"),
    (dict(cuda_capability=(7, 5)), "8.0"),
])
def test_flash_attention_refused_where_it_cannot_run(kw, why):
    args = dict(GPU, cuda_capability=(9, 0), have=ALL)
    args.update(kw)
    s = choose_speedups(**args)
    assert s.attention == "sdpa" and any(why in n for n in s.not_used)


def test_liger_only_for_model_types_it_patches():
    s = choose_speedups(**dict(GPU, model_type="gpt2"), have=ALL, cuda_capability=(9, 0))
    assert not s.liger and any("gpt2" in n for n in s.not_used)


@pytest.mark.parametrize("kw, why", [
    (dict(padding_free=False), "off in the config"),
    (dict(batch_size=1), "micro-batch 1"),
    (dict(packing=True), "packing"),
    (dict(trust_remote_code=True), "remote model code"),
])
def test_padding_free_off_when_it_cannot_help_or_might_be_wrong(kw, why):
    args = dict(GPU, have=NONE)
    args.update(kw)
    s = choose_speedups(**args)
    assert not s.padding_free and any(why in n for n in s.not_used)


def test_env_switches_reach_the_trainer_choice(monkeypatch, tmp_path):
    from ftwizard.config import load_config
    from ftwizard.training.trainer import Precision, speedups_for
    from tests.helpers import tiny_config

    cfg = load_config(tiny_config(tmp_path))
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text('{"model_type": "llama"}')
    s = speedups_for(cfg, str(tmp_path / "base"), Precision("cpu", False, False))
    assert s.padding_free and s.attention == "sdpa" and not s.liger
    cfg.data.padding_free = False
    assert not speedups_for(cfg, str(tmp_path / "base"), Precision("cpu", False, False)).padding_free


def test_installed_is_torch_free_and_reports_this_machine():
    code = ("import sys; from ftwizard.training.speedups import installed; h = installed(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(sorted(h))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert set(installed()) == {"liger_kernel", "flash_attn", "flash_attn_interface"}


def test_estimator_models_each_speed_up():
    base = EstimateInput(model="llama-3.1-8b", method="lora", max_length=2048, micro_batch=4)
    plain = estimate(base, with_advice=False)
    liger = estimate(base.with_changes(liger=True), with_advice=False)
    flash = estimate(base.with_changes(attention="flash_attention_2"), with_advice=False)
    assert liger.parts["activations"] < plain.parts["activations"]
    # FlashAttention drops the padding-free block-diagonal mask and the repeated K/V
    assert flash.parts["activations"] < plain.parts["activations"]
    saves = {d["package"]: d["saves_bytes"] for d in speedup_savings(base)}
    assert saves["liger-kernel"] == plain.total_bytes - liger.total_bytes > 0
    assert saves["flash-attn"] == plain.total_bytes - flash.total_bytes > 0
    assert speedup_savings(base.with_changes(liger=True, attention="flash_attention_3")) == []


def test_padding_free_counts_real_tokens_not_padding():
    lengths = (100, 500) * 50
    padded = estimate(EstimateInput(model="embedded", lengths=lengths, micro_batch=2, padding_free=False),
                      with_advice=False)
    free = estimate(EstimateInput(model="embedded", lengths=lengths, micro_batch=2), with_advice=False)
    assert free.tokens == sum(lengths) < padded.tokens


def test_fused_head_estimate_matches_trl_kernel_on_cpu():
    """TRL's chunked LM head (what the trainer's loss runs through) holds what the estimator
    says, not the 12 B/token/vocab of full logits: measured with torch.profiler on the CPU path."""
    import torch
    from trl.kernels import ChunkedLogProbFunction

    from ftwizard.hardware.measure import cpu_peak_tensor_bytes
    from ftwizard.hardware.memory import MemorySettings, fused_head_bytes
    from ftwizard.hardware.shapes import resolve_shape

    n, shape = 256, resolve_shape("embedded")
    hidden = torch.randn(n, shape.hidden, requires_grad=True)
    weight = torch.randn(shape.vocab, shape.hidden) * 0.02
    targets = torch.randint(0, shape.vocab, (n,))

    def step():
        out = ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0,
                                           ("log_probs", "entropy", "is_top1"))
        (-out[0].sum()).backward()

    measured = cpu_peak_tensor_bytes(step)
    est = fused_head_bytes(shape, MemorySettings(device="cpu", precision="fp32"), n, res=4, p=4, trainable_head=False)
    assert abs(est - measured) / measured < 0.15, (est, measured)
