"""Pre-flight rules of the preference objectives (DPO, ORPO, KTO): a trigger and a near miss for each threshold
(docs/preflight-rules.md cites the sources; the ranges live in ftwizard.preference_guidance), plus the config's
objective defaults."""

from __future__ import annotations

import pytest

from ftwizard import preference_guidance as pg
from ftwizard.config import config_from_dict, default_learning_rate, objective_fields, starting_config
from ftwizard.errors import UserError
from ftwizard.preflight import ERROR, INFO, WARNING
from helpers import tiny_preference_rows
from test_preflight_rules import check, rows_file, severity


def kto_rows(good: int, bad: int) -> list[dict]:
    rows = []
    for i in range(max(good, bad)):
        for label, n in ((True, good), (False, bad)):
            if i < n:
                rows.append({"prompt": f"Question {i}: what colour is the sky?",
                             "completion": "blue" if label else f"green {i}", "label": label})
    return rows


@pytest.fixture(scope="module")
def pref_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pref")
    return {"train": rows_file(d, "pairs.jsonl", tiny_preference_rows(8)),
            "eval": rows_file(d, "pairs_eval.jsonl", tiny_preference_rows(4))}


def pref(pref_files, objective="dpo", method="lora", training=None, preference=None, data=None):
    over = {"model": {"method": method}, "data": {**pref_files, **(data or {})},
            "training": {"objective": objective, **(training or {})}}
    if preference:
        over["preference"] = preference
    return check(over)


def test_learning_rate_thresholds_dpo_lora(pref_files):
    low, high = pg.OBJECTIVES["dpo"].lr_lora
    assert (low, high) == (5e-6, 5e-5) and pg.LR_WARN_FACTOR == 3 and pg.LR_ERROR_FACTOR == 20
    # an SFT learning rate (2e-4 = 4x the top) is caught, with the objective's default as the fix
    rep = pref(pref_files, training={"learning_rate": 2e-4})
    f = rep.by_rule("pref.lr")[0]
    assert f.severity == WARNING and f.edit == {"training.learning_rate": 5e-6} and "DPO with LoRA" in f.message
    assert not rep.by_rule("lr.range")  # SFT's range does not judge a DPO run
    # 3x the top: info (near miss); just above it: warning
    assert severity(pref(pref_files, training={"learning_rate": 1.5e-4}), "pref.lr") == INFO
    assert severity(pref(pref_files, training={"learning_rate": 1.6e-4}), "pref.lr") == WARNING
    # 20x the top: error and the gate refuses; just below: warning
    rep = pref(pref_files, training={"learning_rate": 1e-3})
    assert severity(rep, "pref.lr") == ERROR and not rep.ok
    assert severity(pref(pref_files, training={"learning_rate": 9.9e-4}), "pref.lr") == WARNING
    # below a tenth of the bottom: warning; at it: info; inside the range (and the default): nothing
    assert severity(pref(pref_files, training={"learning_rate": 4.9e-7}), "pref.lr") == WARNING
    assert severity(pref(pref_files, training={"learning_rate": 5e-7}), "pref.lr") == INFO
    assert not pref(pref_files).by_rule("pref.lr")


def test_learning_rate_full_dpo_at_an_sft_rate_is_an_error(pref_files):
    # full SFT's 2e-5 is 20x full DPO's typical top (1e-6): doomed
    rep = pref(pref_files, method="full", training={"learning_rate": 2e-5})
    f = rep.by_rule("pref.lr")[0]
    assert f.severity == ERROR and f.edit == {"training.learning_rate": 5e-7}
    assert severity(pref(pref_files, method="full", training={"learning_rate": 1.9e-5}), "pref.lr") == WARNING
    # ORPO and KTO have their own ranges: 8e-6 is ORPO's default with LoRA, and fine
    assert not pref(pref_files, objective="orpo", training={"learning_rate": 8e-6}).by_rule("pref.lr")
    assert severity(pref(pref_files, objective="kto", method="full", training={"learning_rate": 1e-4}),
                    "pref.lr") == ERROR  # 20x KTO full's 5e-6


def test_beta_range(pref_files):
    assert severity(pref(pref_files, preference={"beta": 0.009}), "pref.beta") == WARNING
    assert not pref(pref_files, preference={"beta": 0.01}).by_rule("pref.beta")
    f = pref(pref_files, preference={"beta": 0.51}).by_rule("pref.beta")[0]
    assert f.severity == WARNING and f.edit == {"preference.beta": 0.1}
    assert not pref(pref_files, preference={"beta": 0.5}).by_rule("pref.beta")
    # ORPO's lambda: 0.05..1.0
    assert severity(pref(pref_files, objective="orpo", preference={"beta": 0.04}), "pref.beta") == WARNING
    assert not pref(pref_files, objective="orpo", preference={"beta": 1.0}).by_rule("pref.beta")


def test_preference_objective_on_sft_data_and_the_reverse(pref_files):
    # DPO on chat rows: an error naming the fix; the sound (chat) base triggers it, the pairs do not
    rep = check({"training": {"objective": "dpo"}})
    f = rep.by_rule("pref.data")[0]
    assert f.severity == ERROR and "messages" in f.message and f.edit == {"training.objective": "sft"}
    assert not pref(pref_files).by_rule("pref.data")
    assert not pref(pref_files, objective="kto").by_rule("pref.data")  # KTO takes pairs too
    # SFT on pairs: the lint says which objective to set
    rep = check({"data": pref_files})
    assert not rep.ok
    msgs = " ".join(f.message + " " + f.fix for f in rep.findings if f.rule == "lint.format.preference")
    assert "training.objective" in msgs


def test_kto_batch(pref_files):
    rep = pref(pref_files, objective="kto", training={"batch_size": 1})
    assert severity(rep, "pref.kto_batch") == ERROR and not rep.ok
    assert not pref(pref_files, objective="kto", training={"batch_size": 2}).by_rule("pref.kto_batch")


def test_kto_balance(tmp_path, pref_files):
    def balance(good, bad, **weights):
        data = {"train": rows_file(tmp_path, f"kto_{good}_{bad}.jsonl", kto_rows(good, bad)), "eval": None}
        return pref(pref_files, objective="kto", data=data, preference=weights or None)

    # 1 <= w_d n_d / (w_u n_u) <= 4/3 is the KTO paper's range
    assert not balance(4, 4).by_rule("pref.kto_balance")          # 1.0
    assert not balance(8, 6).by_rule("pref.kto_balance")          # 1.33
    f = balance(9, 6).by_rule("pref.kto_balance")[0]              # 1.5
    assert f.severity == WARNING and "1.50" in f.message
    assert f.edit == {"preference.desirable_weight": round(6 * (1 + 4 / 3) / 2 / 9, 3)}
    assert balance(4, 5).by_rule("pref.kto_balance")[0].severity == WARNING   # 0.8
    # the weights count: 4 good / 5 bad with desirable_weight 1.25 is exactly 1
    assert not balance(4, 5, desirable_weight=1.25).by_rule("pref.kto_balance")
    # pairs are balanced by construction
    assert not pref(pref_files, objective="kto").by_rule("pref.kto_balance")


def test_objective_defaults_and_validation(tmp_path):
    base = {"data": {"train": "x.jsonl"}}
    cfg = config_from_dict({**base, "training": {"objective": "dpo"}})
    assert cfg.training.learning_rate == 5e-6 == default_learning_rate("dpo", "lora")
    full = config_from_dict({**base, "model": {"method": "full"}, "training": {"objective": "dpo"}})
    assert full.training.learning_rate == 5e-7
    assert config_from_dict({**base, "training": {"objective": "orpo"}}).training.learning_rate == 8e-6
    # a rate the user set is kept, and SFT keeps its default; the YAML round trip keeps the defaulted rate
    assert config_from_dict({**base, "training": {"objective": "dpo", "learning_rate": 1e-5}}).training.learning_rate == 1e-5
    assert config_from_dict(base).training.learning_rate == 2e-4
    assert config_from_dict(full.to_dict()).training.learning_rate == 5e-7
    kto = starting_config(objective="kto")  # `ftwizard init --objective kto`: the sample pairs, KTO's own rate
    assert kto.training.learning_rate == 5e-6 and kto.data.train.name == "preference_train.jsonl"
    assert starting_config().data.train.name == "train.jsonl" and starting_config().training.learning_rate == 4e-4
    # every default sits inside its objective's typical range
    for (objective, method), lr in __import__("ftwizard.config", fromlist=["x"]).PREFERENCE_LR.items():
        low, high = pg.OBJECTIVES[objective].lr_range(method)
        assert low <= lr <= high, (objective, method)
    with pytest.raises(UserError, match="packing"):
        config_from_dict({**base, "data": {"train": "x.jsonl", "packing": True}, "training": {"objective": "dpo"}})
    with pytest.raises(UserError, match="loss_type"):
        config_from_dict({**base, "preference": {"loss_type": "nope"}})
    assert objective_fields("orpo") == ("beta",) and objective_fields("sft") == ()


def test_memory_estimate_of_the_preference_objectives():
    """Pairs double the sequences per micro-batch; the reference costs nothing with LoRA (adapter off) or when
    precomputed, and a frozen copy of the weights in the compute dtype with full fine-tuning; KTO's KL batch and
    every reference forward run without gradients (no activations kept)."""
    from ftwizard.hardware.estimate import OBJECTIVE_COMPUTE, EstimateInput, estimate

    def est(objective="sft", method="lora", batch=2, **kw):
        return estimate(EstimateInput(model="embedded", method=method, max_length=128, micro_batch=batch,
                                      device="cpu", padding_free=False, objective=objective, rows=100, **kw),
                        with_advice=False)

    sft2, sft4 = est(batch=2), est(batch=4)
    dpo = est("dpo")
    assert dpo.parts["activations"] == sft4.parts["activations"] > sft2.parts["activations"]
    assert dpo.parts["reference_model"] == 0 and sft2.parts["reference_model"] == 0
    assert any("adapter off" in n for n in dpo.notes)
    full = est("dpo", "full")
    assert full.parts["reference_model"] == full.total_params * 4  # CPU: fp32 is the compute dtype
    gpu = estimate(EstimateInput(model="embedded", method="full", max_length=128, micro_batch=2, precision="bf16",
                                 objective="dpo", padding_free=False), with_advice=False)
    assert gpu.parts["reference_model"] == gpu.total_params * 2  # bf16
    assert est("dpo", "full", reference="precomputed").parts["reference_model"] == 0
    assert est("orpo", "full").parts["reference_model"] == 0  # ORPO has no reference
    kto = est("kto", "full")
    assert kto.parts["reference_model"] == kto.total_params * 4
    assert est("kto").parts["activations"] == sft2.parts["activations"]
    # time: DPO computes 8/3 of an SFT step per row (policy fwd+bwd on both answers, reference fwd on both)
    assert dpo.flops == pytest.approx(sft2.flops * OBJECTIVE_COMPUTE["dpo"], rel=0.01)


def test_kto_unpairs_pairs_without_same_prompt_neighbours():
    """TRL's KTO pairs each row's prompt with the previous row's completion for its KL term: a pair's two answers
    must not sit side by side (they would share the prompt), and each batch should mix both labels."""
    from ftwizard.training.preference import unpair

    for n in (2, 3, 4, 7, 8):
        rows = [{"prompt": [{"role": "user", "content": f"p{i}"}], "chosen": [f"c{i}"], "rejected": [f"r{i}"]}
                for i in range(n)]
        out = unpair(rows)
        assert sorted(r["completion"][0] for r in out) == sorted([f"c{i}" for i in range(n)] + [f"r{i}" for i in range(n)])
        assert all(r["label"] == r["completion"][0].startswith("c") for r in out)
        assert not any(out[k]["prompt"] == out[k - 1]["prompt"] for k in range(1, len(out)))
        if n >= 4:
            assert [r["label"] for r in out[:4]] == [True, False, True, False]
