"""Preference evaluation on a real model pair (the embedded model, and it with a random LoRA adapter): the
runner's numbers checked against a direct computation with transformers, and summary.json carrying them.
Slow (loads the model a few times) but small: 3 pairs, no training."""

from __future__ import annotations

import json
import math

import pytest

from helpers import write_jsonl

pytestmark = pytest.mark.slow

PAIRS = [
    {"prompt": [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "What colour is the sky?"}],
     "chosen": [{"role": "assistant", "content": "blue"}], "rejected": [{"role": "assistant", "content": "green"}]},
    {"prompt": "What colour is snow?", "chosen": "white", "rejected": "The colour of snow is black, mostly."},
    {"chosen": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."}],
     "rejected": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "A carrot."}]},
]
BETA = 0.2


@pytest.fixture(scope="module")
def model_pair(embedded_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) B matrices: a 'tuned' model that differs from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("adapter") / "adapter"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(out)
    return embedded_model_dir, out


def direct_logps(model, tok, pair) -> tuple[float, float]:
    """Summed log p of the chosen and the rejected answer given the prompt, one sequence at a time."""
    import torch

    from ftwizard.data.preference import normalise_row

    _, p = normalise_row(pair)
    out = []
    prompt = tok.apply_chat_template(p["prompt"], tokenize=False, add_generation_prompt=True)
    for side in ("chosen", "rejected"):
        full = tok.apply_chat_template(p["prompt"] + p[side], tokenize=False)
        assert full.startswith(prompt)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tok(full, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        targets = ids[0, 1:]
        lp = logp[torch.arange(len(targets)), targets]
        out.append(float(lp[n_prompt - 1:].sum()))
    return out[0], out[1]


def test_runner_numbers_match_a_direct_computation(model_pair, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftwizard.config import RunConfig
    from ftwizard.evaluation.launch import make_spec
    from ftwizard.evaluation.runner import run_eval
    from ftwizard.rundir import EventWriter

    base_dir, adapter = model_pair
    held = write_jsonl(tmp_path / "pairs_eval.jsonl", PAIRS)
    cfg = RunConfig.model_validate({
        "model": {"base": str(base_dir), "method": "lora"},
        "data": {"train": str(write_jsonl(tmp_path / "pairs_train.jsonl", PAIRS[:1])), "eval": str(held),
                 "max_length": 128, "packing": False},
        "training": {"objective": "dpo"}, "preference": {"beta": BETA},
        "evaluation": {"few_shot": 0, "preference_generation": True}})
    models = [{"id": "base", "label": "base", "kind": "base", "path": None, "step": 0},
              {"id": "final", "label": "final", "kind": "adapter", "path": str(adapter), "step": 4}]
    spec = make_spec(cfg, models, run=None, eval_file=None, max_samples=None, batch_size=2, probe=False)
    assert spec["task"] == "preference" and spec["metric"] == "pref_accuracy" and spec["preference"]["beta"] == BETA
    eval_dir = tmp_path / "eval"
    summary = run_eval(eval_dir, spec, EventWriter(eval_dir / "events.jsonl"), log=lambda *_: None)

    # the direct computation: plain transformers, one sequence at a time
    tok = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    b = [direct_logps(base, tok, p) for p in PAIRS]
    tuned = PeftModel.from_pretrained(base, str(adapter)).eval()
    t = [direct_logps(tuned, tok, p) for p in PAIRS]
    assert any(abs(x[0] - y[0]) > 1e-3 for x, y in zip(b, t))  # the adapter changes the model

    res = {m: json.loads((eval_dir / f"{m}.json").read_text()) for m in ("base", "final")}
    for mid, direct in (("base", b), ("final", t)):
        rows = res[mid]["rows"]
        assert rows["logp_chosen"] == pytest.approx([x[0] for x in direct], abs=2e-3)
        assert rows["logp_rejected"] == pytest.approx([x[1] for x in direct], abs=2e-3)
        acc = sum(1.0 if c > r else 0.0 for c, r in direct) / len(direct)
        assert res[mid]["metrics"]["pref_accuracy"] == pytest.approx(acc)
        assert res[mid]["task"] == "preference"
    margins = [BETA * ((tc - bc) - (tr - br)) for (tc, tr), (bc, br) in zip(t, b)]
    assert res["final"]["metrics"]["reward_margin"] == pytest.approx(sum(margins) / len(margins), abs=2e-3)
    assert res["base"]["metrics"]["reward_margin"] == 0.0
    # length-normalised accuracy: per-token log-probs
    rows = res["final"]["rows"]
    norm = [1.0 if c / nc > r / nr else 0.0 for c, nc, r, nr in zip(rows["logp_chosen"], rows["tokens_chosen"],
                                                                   rows["logp_rejected"], rows["tokens_rejected"])]
    assert res["final"]["metrics"]["pref_accuracy_norm"] == pytest.approx(sum(norm) / len(norm))

    # summary.json carries them, base vs tuned, with the generation metrics against the chosen answer
    on_disk = json.loads((eval_dir / "summary.json").read_text())
    assert on_disk["task"] == "preference" and on_disk["primary_metric"] == "pref_accuracy"
    names = [m["name"] for m in on_disk["metrics"]]
    assert names[:3] == ["pref_accuracy", "pref_accuracy_norm", "reward_margin"] and "rouge_l" in names
    by_id = {m["id"]: m["metrics"] for m in on_disk["models"]}
    assert by_id["final"]["reward_margin"] == pytest.approx(res["final"]["metrics"]["reward_margin"])
    assert on_disk["verdict"]["metric"] == "pref_accuracy" and on_disk["verdict"]["n"] == 3
    assert on_disk["preference"] == {"beta": BETA, "pairs": 3, "generated": True,
                                     "reference": on_disk["preference"]["reference"]}
    assert len(on_disk["samples"]) == 3 and on_disk["samples"][1]["reference"] == "white"
    assert summary["models"] == on_disk["models"]
    assert all(math.isfinite(v) for v in rows["logp_chosen"])

    # the printed table names the preference columns
    from rich.console import Console

    from ftwizard.evaluation.report import metrics_table

    console = Console(width=100, record=True)
    console.print(metrics_table(on_disk))
    text = console.export_text()
    assert "pref acc" in text and "margin" in text and "held-out preference metrics" in text

    # run again: both results are kept, nothing recomputed
    mtimes = [(eval_dir / f"{m}.json").stat().st_mtime_ns for m in ("base", "final")]
    run_eval(eval_dir, spec, EventWriter(eval_dir / "events.jsonl"), log=lambda *_: None)
    assert [(eval_dir / f"{m}.json").stat().st_mtime_ns for m in ("base", "final")] == mtimes


def test_unpaired_held_out_file_is_refused_clearly(tmp_path):
    from ftwizard.config import RunConfig
    from ftwizard.errors import UserError
    from ftwizard.evaluation.launch import make_spec

    write_jsonl(tmp_path / "train.jsonl", [{"prompt": "Q", "completion": "c", "label": True}])
    held = write_jsonl(tmp_path / "kto_eval.jsonl", [{"prompt": "Q", "completion": "a", "label": True},
                                                     {"prompt": "Q", "completion": "b", "label": False}])
    cfg = RunConfig.model_validate({"model": {"base": "embedded"}, "data": {"train": str(tmp_path / "train.jsonl"), "eval": str(held),
                                                                 "packing": False},
                                    "training": {"objective": "kto"}})
    with pytest.raises(UserError) as e:
        make_spec(cfg, [{"id": "base", "label": "base", "kind": "base", "path": None, "step": 0}], run=None,
                  eval_file=None, max_samples=None, batch_size=None)
    assert "kto_eval.jsonl row 1" in e.value.what and "needs held-out pairs" in e.value.what
