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


def test_same_model_passes_and_a_model_that_rambles_is_a_behaviour_warning_not_a_failure(models):
    a, _ = models
    ref = V.run_reference(a, PROMPTS, stops=[3], max_new_tokens=6, pad_id=0)
    res = V.compare("same", a, ref, dtype="fp32")
    assert res.metrics["identical_continuations"] == 2 and res.metrics["max_abs_logit_diff"] == 0
    # this random model never emits token 3 in 6 steps: the export is faithful, so it passes, with a warning
    assert res.metrics["stopped"] == 0
    assert res.ok, res.detail
    assert res.warnings and "did not end its turn within 6 tokens on 2 of 2 prompts" in res.warnings[0]


def test_an_export_that_runs_past_the_trained_models_end_of_turn_fails(models):
    a, b = models
    ref = V.run_reference(a, PROMPTS[:1], stops=[3], max_new_tokens=6, pad_id=0)
    first = ref.tokens[0][0]
    ref = V.run_reference(a, PROMPTS[:1], stops=[first], max_new_tokens=6, pad_id=0)  # the trained model stops
    assert ref.stopped(0)
    cand = V.Candidate([[t for t in range(5, 11) if t != first][:6]], [ref.tokens[0]], 0.0)
    res = V.judge("never stops", ref, cand, min_top1=0.5, decode=lambda ids: "".join(f"<{i}>" for i in ids),
                  prompt_labels=["eval prompt 1 (What colour is sky?)"])
    assert not res.ok
    assert "ran past the end-of-turn on 1 of 1 prompts where the trained model stopped" in res.detail
    # the failure names the prompt, the first differing token and both texts
    assert "eval prompt 1 (What colour is sky?): first difference at token 1" in res.detail
    assert f"trained text '<{first}>'" in res.detail and "export text '<" in res.detail


def test_logit_tolerance_follows_dtype_and_magnitude():
    assert V.logit_tolerance("fp16", 30.0) == pytest.approx(30 * 8 * 2 ** -11)
    assert V.logit_tolerance("bf16", 30.0) > 8 * V.logit_tolerance("fp16", 30.0) * 0.99
    assert V.logit_tolerance("fp16", 60.0) == 2 * V.logit_tolerance("fp16", 30.0)
    # the numbers: an fp16 merge off by 0.0358 at logit scale ~20 is rounding, not a failure
    assert V.logit_tolerance("fp16", 20.0) > 0.0358
    assert V.limit_from_answers([40, 10]) == 76 and V.limit_from_answers([]) == 88


def test_other_weights_fail_tokens_and_logits(models):
    a, b = models
    ref = V.run_reference(a, PROMPTS, stops=[3], max_new_tokens=6, pad_id=0)
    res = V.compare("other", b, ref, dtype="fp16")
    assert not res.ok
    assert "logits differ" in res.detail and "greedy continuations differ" in res.detail
    assert "more than fp16 rounding explains" in res.detail and "first difference at token" in res.detail
    assert res.metrics["max_abs_logit_diff"] > res.metrics["logit_tolerance"]


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
        return [f], [V.compare("reload", b, ref, dtype="fp32")], {}

    from ftwizard.export.pipeline import Progress

    ex.progress = Progress(ex.manifest, ex.log)
    lines = []
    ex.log = lines.append
    assert ex._step("merged", fake_step, 1, 1.0) is False
    assert ex._step("gguf-q8_0", lambda: (_ for _ in ()).throw(RuntimeError("llama.cpp's converter failed: x")),
                    1, 1.0) is False
    # the log never says FAILED and ok for the same export
    merged_lines = [ln for ln in lines if ln.startswith("[merged]")]
    assert any("FAILED" in ln for ln in merged_lines) and not any(" ok" in ln for ln in merged_lines)
    assert ex.manifest.close() == "failed"
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["exports"]["merged"]["state"] == "failed" and "reload: " in m["exports"]["merged"]["reason"]
    assert m["exports"]["merged"]["bytes"] == 10
    assert m["exports"]["gguf-q8_0"]["reason"] == "RuntimeError: llama.cpp's converter failed: x"
