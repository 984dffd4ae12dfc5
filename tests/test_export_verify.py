"""The load-back checks fail when they should: tiny random llama models (no training,
seconds on a CPU), and a failed check lands in the manifest as a failed export with its reason."""

from __future__ import annotations

import json

import pytest

from ftwizard.export import verify as V


def tiny_llama(seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      eos_token_id=3, pad_token_id=0, bos_token_id=1)
    return LlamaForCausalLM(cfg).eval()


PROMPTS = [[5, 6, 7, 8], [9, 10, 11]]


@pytest.fixture(scope="module")
def models():
    return tiny_llama(0), tiny_llama(1)


def test_same_model_passes_exact_check_and_reports_runaway_generation(models):
    a, _ = models
    ref = V.run_reference(a, PROMPTS, stops=[3], max_new_tokens=6, pad_id=0)
    res = V.compare("same", a, ref, [3], 6, 0, tokens_must_match=True, atol=V.EXACT_ATOL)
    assert res.metrics["identical_continuations"] == 2 and res.metrics["max_abs_logit_diff"] == 0
    # this random model never emits token 3 in 6 steps: that alone fails the check
    assert res.metrics["stopped"] == 0
    assert not res.ok and res.detail == "2 of 2 chat prompts ran to the 6-token limit without the end-of-turn token"
    # and when the stop token is whatever it greedily emits first, it passes
    first = ref.tokens[0][0]
    ref2 = V.run_reference(a, PROMPTS[:1], stops=[first], max_new_tokens=6, pad_id=0)
    ok = V.compare("same", a, ref2, [first], 6, 0, tokens_must_match=True, atol=V.EXACT_ATOL)
    assert ok.ok, ok.detail


def test_other_weights_fail_tokens_and_logits(models):
    a, b = models
    ref = V.run_reference(a, PROMPTS, stops=[3], max_new_tokens=6, pad_id=0)
    res = V.compare("other", b, ref, [3], 6, 0, tokens_must_match=True, atol=V.EXACT_ATOL, min_top1=0.9)
    assert not res.ok
    assert "logits differ" in res.detail and "greedy continuations differ" in res.detail
    assert res.metrics["max_abs_logit_diff"] > V.EXACT_ATOL


def test_a_failed_check_marks_the_export_failed_in_the_manifest(tmp_path, models):
    from ftwizard.export.manifest import Manifest
    from ftwizard.export.pipeline import Exporter

    a, b = models
    ex = Exporter.__new__(Exporter)  # only the step bookkeeping, no run needed
    ex.manifest = Manifest(tmp_path, "r", ["merged"], {})
    ex.log = lambda *_: None
    ref = V.run_reference(a, PROMPTS, stops=[3], max_new_tokens=4, pad_id=0)
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 10)

    def fake_step():
        return [f], [V.compare("reload", b, ref, [3], 4, 0, tokens_must_match=True, atol=V.EXACT_ATOL)], {}

    assert ex._step("merged", fake_step) is False
    assert ex._step("gguf-q8_0", lambda: (_ for _ in ()).throw(RuntimeError("llama.cpp's converter failed: x"))) is False
    assert ex.manifest.close() == "failed"
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["exports"]["merged"]["state"] == "failed" and "reload: " in m["exports"]["merged"]["reason"]
    assert m["exports"]["merged"]["bytes"] == 10
    assert m["exports"]["gguf-q8_0"]["reason"] == "RuntimeError: llama.cpp's converter failed: x"
