"""One test per pre-flight rule: a config/data pair that triggers it and a near one that does not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftwizard.config import config_from_dict
from ftwizard.preflight import ERROR, INFO, RULES, WARNING, run_check

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "preflight"
DATA = FIXTURES / "data"
SOUND = {"data": {"train": "data/sound_train.jsonl", "eval": "data/sound_eval.jsonl", "max_length": 128,
                  "task_type": "extraction"},
         "training": {"epochs": 2}}


def merge(base: dict, over: dict) -> dict:
    out = json.loads(json.dumps(base))
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def check(over: dict | None = None, **kw):
    cfg = config_from_dict(merge(SOUND, over or {}), base_dir=FIXTURES)
    return run_check(cfg, **kw)


def severity(rep, rule: str) -> str | None:
    fs = rep.by_rule(rule)
    return fs[0].severity if fs else None


def rows_file(tmp_path: Path, name: str, rows: list[dict]) -> str:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def sound_rows(n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "sound_train.jsonl").read_text().splitlines()]
    return rows[:n] if n else rows


def test_the_sound_base_is_clean():
    rep = check()
    assert rep.ok and not rep.warnings, [f.message for f in rep.findings]


# ---- can the run start ----------------------------------------------------------------------
def test_model_unavailable():
    rep = check({"model": {"base": "nobody-xyz/not-a-model"}})
    assert severity(rep, "model.unavailable") == ERROR and not rep.ok
    assert severity(check(), "model.unavailable") is None


def test_data_missing(tmp_path):
    rep = check({"data": {"train": str(tmp_path / "nope.jsonl")}})
    f = rep.by_rule("data.missing")[0]
    assert f.severity == ERROR and "data.train file not found" in f.message
    rep = check({"data": {"eval": str(tmp_path)}})  # a folder
    assert severity(rep, "data.missing") == ERROR
    assert severity(check(), "data.missing") is None


def test_device_no_gpu():
    from ftwizard.hardware.gpus import detect

    if detect().gpus:
        pytest.skip("a GPU is present")
    rep = check({"training": {"device": "cuda"}})
    assert severity(rep, "device.no_gpu") == ERROR
    assert severity(check({"training": {"device": "auto"}}), "device.no_gpu") is None


def test_precision_needs_gpu():
    rep = check({"training": {"device": "cpu", "precision": "fp16"}})
    assert severity(rep, "precision.needs_gpu") == ERROR
    assert rep.by_rule("precision.needs_gpu")[0].edit == {"training.precision": "auto"}
    assert severity(check({"training": {"device": "cpu", "precision": "fp32"}}), "precision.needs_gpu") is None


def test_precision_bf16_unsupported():
    over = {"training": {"precision": "bf16"}}
    assert severity(check(over, gpu="T4"), "precision.bf16_unsupported") == ERROR  # compute capability 7.5
    assert severity(check(over, gpu="A10G"), "precision.bf16_unsupported") is None  # 8.6


def test_memory_does_not_fit_with_ranked_fixes():
    over = {"model": {"method": "full"}, "data": {"max_length": 8192, "packing": True},
            "training": {"batch_size": 16, "gradient_accumulation": 1, "learning_rate": 2e-5}}
    rep = check(over, gpu="T4")
    f = rep.by_rule("memory.does_not_fit")[0]
    assert f.severity == ERROR and f.advice and "T4" in f.message
    assert f.advice[0]["verdict"] == "fits" and f.edit
    near = merge(over, {"training": {"batch_size": 4, "gradient_accumulation": 4}})
    assert severity(check(near, gpu="A100 80GB"), "memory.does_not_fit") is None


def _tight():
    # ~91 % of a T4 under the estimator's model (TRL's chunked LM head, no fp32 QLoRA upcast)
    return {"data": {"max_length": 2560, "packing": True}, "training": {"batch_size": 5, "gradient_accumulation": 4}}


def test_memory_checkpointing_off_when_tight():
    rep = check(_tight(), gpu="T4")
    f = rep.by_rule("memory.checkpointing_off")[0]
    assert f.severity == WARNING and f.edit == {"training.gradient_checkpointing": True}
    near = merge(_tight(), {"training": {"gradient_checkpointing": True}})
    assert severity(check(near, gpu="T4"), "memory.checkpointing_off") is None
    assert severity(check(_tight(), gpu="L4"), "memory.checkpointing_off") is None  # more memory: fits


def test_budget_time_and_cost():
    rep = check({"training": {"epochs": 3}}, gpu="T4", budget_hours=0.0001, budget_usd=1e-6)
    assert severity(rep, "budget.time") == ERROR and severity(rep, "budget.cost") == ERROR
    rep = check({"training": {"epochs": 3}}, gpu="T4", budget_hours=1, budget_usd=5)
    assert severity(rep, "budget.time") is None and severity(rep, "budget.cost") is None


# ---- data --------------------------------------------------------------------------------------
def test_lint_errors_pass_through(tmp_path):
    rows = sound_rows(40)
    rows[3]["messages"][1]["role"] = "bot"
    rep = check({"data": {"train": rows_file(tmp_path, "t.jsonl", rows)}})
    f = rep.by_rule("lint.roles.unknown")[0]
    assert f.severity == ERROR and f.rows == [4] and "messages[1].role" in (f.field or "")
    assert not check({"data": {"train": rows_file(tmp_path, "ok.jsonl", sound_rows(40))}}).rules_hit(ERROR)


def test_lint_warnings_are_summarised_as_info(tmp_path):
    rows = sound_rows(300)
    rows[10] = rows[11]
    rep = check({"data": {"train": rows_file(tmp_path, "d.jsonl", rows)}})
    f = rep.by_rule("data.duplicates")[0]  # one copy in 300 is mild: info (the thresholds: test_preflight_balance)
    assert f.severity == INFO and f.rows == [12] and f.count == 1 and not rep.by_rule("lint.dup.exact")


def _no_eos_model(tmp_path: Path, embedded_model_dir: Path) -> str:
    out = tmp_path / "model"
    out.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(embedded_model_dir / name, out / name)
    template = (embedded_model_dir / "chat_template.jinja").read_text()
    (out / "chat_template.jinja").write_text(template.replace("+ '<|im_end|>' + '\n'", "+ '\n'"))
    assert (out / "chat_template.jinja").read_text() != template
    return str(out)


def test_data_eos(tmp_path, embedded_model_dir):
    rep = check({"model": {"base": _no_eos_model(tmp_path, embedded_model_dir)}})
    assert severity(rep, "data.eos") == ERROR
    near = tmp_path / "same"
    near.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "chat_template.jinja"):
        shutil.copy(embedded_model_dir / name, near / name)
    assert severity(check({"model": {"base": str(near)}}), "data.eos") is None


def test_data_chat_markup_foreign_and_own(tmp_path):
    rows = sound_rows(300)
    for r in rows[:30]:  # 10 %: a warning
        r["messages"][1]["content"] = "[INST] " + r["messages"][1]["content"] + " [/INST]"
    rep = check({"data": {"train": rows_file(tmp_path, "m.jsonl", rows)}})
    f = rep.by_rule("data.chat_markup")[0]
    assert f.severity == WARNING and f.count == 30 and f.rows[:2] == [1, 2]
    assert "Llama 2 / Mistral" in f.message and "ChatML" in f.message
    for r in rows[30:200]:  # now most rows: an error
        r["messages"][2]["content"] += "<|im_end|>"
    rep = check({"data": {"train": rows_file(tmp_path, "m2.jsonl", rows)}})
    assert severity(rep, "data.chat_markup") == ERROR
    assert severity(check(), "data.chat_markup") is None


def test_markup_scanner_alpaca_headers_only_at_line_start():
    from ftwizard.preflight.markup import MarkupScan

    s = MarkupScan()
    s.scan(1, {"messages": [{"role": "user", "content": "see ### Instruction: inline"}]})
    s.scan(2, {"instruction": "### Instruction:\nsay hi", "output": "hi"})
    s.scan(3, {"messages": [{"role": "user", "content": "a <start_of_turn> b"}]})
    assert s.rows == [2, 3] and s.markers["### Instruction:"] == 1 and s.first_field == "instruction"


def test_data_truncation_levels_and_rows(tmp_path):
    rows = sound_rows(300)
    long_answer = " ".join(["many"] * 200)
    for i in (4, 9):
        rows[i]["messages"][2]["content"] = long_answer
    rep = check({"data": {"train": rows_file(tmp_path, "t.jsonl", rows)}})
    f = rep.by_rule("data.truncation")[0]
    assert f.severity == INFO and f.count == 2 and f.rows == [5, 10]  # 0.7 %: a note
    for i in range(0, 300, 10):
        rows[i]["messages"][2]["content"] = long_answer
    rep = check({"data": {"train": rows_file(tmp_path, "t2.jsonl", rows)}})
    f = rep.by_rule("data.truncation")[0]
    assert f.severity == WARNING and f.edit == {"data.max_length": 256}  # p99 of ~213 rounded up to 64s
    rep = check({"data": {"max_length": 32}})
    assert severity(rep, "data.truncation") == ERROR  # every answer cut
    assert severity(check({"data": {"max_length": 128}}), "data.truncation") is None


def test_data_too_few_per_task_type():
    small = {"data": {"train": "data/tiny_classification.jsonl"}, "training": {"max_steps": 5}}
    rep = check(merge(small, {"data": {"task_type": "classification"}}))
    f = rep.by_rule("data.too_few")[0]
    assert f.severity == WARNING and "minimum 50" in f.message
    rep = check(merge(small, {"data": {"train": "data/small_train.jsonl", "task_type": "classification"}}))
    assert severity(rep, "data.too_few") == INFO  # 60 rows: above the minimum, below good
    assert severity(check(merge(small, {"data": {"task_type": "other"}})), "data.too_few") == WARNING


# ---- evaluation ------------------------------------------------------------------------------
def test_eval_missing():
    assert severity(check({"data": {"eval": None}}), "eval.missing") == WARNING
    assert severity(check(), "eval.missing") is None


def test_eval_too_small(tmp_path):
    held = [json.loads(x) for x in (DATA / "sound_eval.jsonl").read_text().splitlines()]
    rep = check({"data": {"eval": rows_file(tmp_path, "e.jsonl", held[:10])}})
    assert severity(rep, "eval.too_small") == WARNING
    assert severity(check({"data": {"eval": rows_file(tmp_path, "e2.jsonl", held[:40])}}), "eval.too_small") is None


def test_eval_overlap():
    rep = check({"data": {"eval": "data/leaky_eval.jsonl"}})
    f = rep.by_rule("eval.overlap")[0]
    assert f.severity == WARNING and f.count == 16 and "16 of 50" in f.message
    rep = check({"data": {"eval": "data/sound_train.jsonl"}})
    assert "is the training file" in rep.by_rule("eval.overlap")[0].message
    assert severity(check(), "eval.overlap") is None


# ---- hyperparameters (config only: no data needed) --------------------------------------------
def hp(over: dict, **kw):
    return check(over, data="skip", **kw)


def test_lr_range_per_method_and_size():
    assert severity(hp({"training": {"learning_rate": 1e-3}}), "lr.range") == WARNING
    assert severity(hp({"training": {"learning_rate": 2e-4}}), "lr.range") is None
    assert severity(hp({"training": {"learning_rate": 3e-4}}), "lr.range") == INFO  # small model: only a note
    assert severity(hp({"training": {"learning_rate": 5e-6}}), "lr.range") == WARNING
    full = {"model": {"method": "full"}}
    assert severity(hp(merge(full, {"training": {"learning_rate": 2e-4}})), "lr.range") == WARNING
    assert severity(hp(merge(full, {"training": {"learning_rate": 2e-5}})), "lr.range") is None
    big = {"model": {"base": "qwen2.5-7b"}, "training": {"learning_rate": 3e-4}}
    rep = hp(big, gpu="H200")
    assert severity(rep, "lr.range") == WARNING and rep.by_rule("lr.range")[0].edit == {"training.learning_rate": 1e-4}


def test_epochs_too_many_counts_passes():
    assert severity(hp({"training": {"epochs": 5}}), "epochs.too_many") == WARNING
    assert severity(hp({"training": {"epochs": 3}}), "epochs.too_many") is None
    rep = hp({"training": {"max_steps": 100}})  # 100 x 16 / 300 rows = 5.3 passes
    f = rep.by_rule("epochs.too_many")[0]
    assert f.edit == {"training.max_steps": 56}
    assert severity(hp({"training": {"max_steps": 50}}), "epochs.too_many") is None


def test_warmup():
    assert severity(hp({"training": {"warmup_ratio": 0.0}}), "warmup.none") == WARNING
    assert severity(hp({"training": {"warmup_ratio": 0.3}}), "warmup.too_long") == WARNING
    rep = hp({"training": {"warmup_ratio": 0.05}})
    assert not rep.by_rule("warmup.none") and not rep.by_rule("warmup.too_long")


def test_effective_batch():
    rep = hp({"training": {"batch_size": 1, "gradient_accumulation": 2}})
    f = rep.by_rule("batch.effective")[0]
    assert f.severity == WARNING and f.edit == {"training.gradient_accumulation": 16}
    assert severity(hp({"training": {"batch_size": 64, "gradient_accumulation": 4}}), "batch.effective") == WARNING
    assert severity(hp({"training": {"batch_size": 2, "gradient_accumulation": 8}}), "batch.effective") is None


def test_steps_too_few():
    rep = hp({"data": {"train": "data/small_train.jsonl"}, "training": {"epochs": 1}})  # 60 rows / 16 = 4 steps
    assert severity(rep, "steps.too_few") == WARNING
    rep = hp({"data": {"train": "data/small_train.jsonl"}, "training": {"epochs": 1, "max_steps": 4}})
    assert severity(rep, "steps.too_few") is None  # a pilot on purpose


def test_lora_rank_and_alpha():
    assert severity(hp({"lora": {"r": 2, "alpha": 4}}), "lora.rank") == WARNING
    assert severity(hp({"lora": {"r": 256, "alpha": 512}}), "lora.rank") == WARNING
    assert severity(hp({"lora": {"r": 96, "alpha": 192}}), "lora.rank") == WARNING  # 300 rows
    assert severity(hp({"lora": {"r": 64, "alpha": 128}}), "lora.rank") is None
    assert severity(hp({"lora": {"r": 8, "alpha": 64}}), "lora.alpha") == WARNING
    assert severity(hp({"lora": {"r": 8, "alpha": 8}}), "lora.alpha") is None
    assert not hp({"model": {"method": "full"}, "lora": {"r": 2, "alpha": 64}}).by_rule("lora.rank")


def test_clipping():
    assert severity(hp({"training": {"max_grad_norm": 1e9}}), "clip.max_grad_norm") == WARNING
    assert severity(hp({"training": {"max_grad_norm": 1.0}}), "clip.max_grad_norm") is None


def test_missing_tracker_package_is_an_error_with_the_install_command(monkeypatch):
    from ftwizard import tracking

    monkeypatch.setitem(tracking.TRACKERS, "wandb", tracking.Tracker("wandb", "no_such_module_h15", "wandb", "wandb", ""))
    rep = hp({"training": {"report_to": ["wandb"]}})
    (f,) = rep.by_rule("tracking.missing")
    assert f.severity == ERROR and "pip install wandb" in f.fix and f.edit == {"training.report_to": []}
    assert not hp({"training": {"report_to": []}}).by_rule("tracking.missing")


def test_online_wandb_without_a_login_is_a_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    online = {"training": {"report_to": ["wandb"], "tracking_mode": "online"}}
    (f,) = hp(online).by_rule("tracking.no_login")
    assert f.severity == WARNING and f.edit == {"training.tracking_mode": "offline"}
    (tmp_path / "no-netrc").write_text("machine api.wandb.ai login user password k3y\n")
    (tmp_path / "no-netrc").chmod(0o600)
    assert not hp(online).by_rule("tracking.no_login")  # `wandb login` wrote its netrc entry
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not hp(online).by_rule("tracking.no_login")
    assert not hp({"training": {"report_to": ["wandb"]}}).by_rule("tracking.no_login")  # offline needs none


def test_every_rule_is_tested_and_documented():
    here = Path(__file__).read_text() + (Path(__file__).parent / "test_preflight_scenarios.py").read_text() \
        + (Path(__file__).parent / "test_preflight_balance.py").read_text() \
        + (Path(__file__).parent / "test_preflight_preference.py").read_text() \
        + (FIXTURES / "scenarios.yaml").read_text()
    doc = (Path(__file__).resolve().parent.parent / "docs" / "preflight-rules.md").read_text()
    for rule_id, rule in RULES.items():
        assert rule.source in ("guidance", "ftwizard", "trainer", "estimate", "lint", "literature")
        assert f"`{rule_id}`" in doc, f"{rule_id} missing from docs/preflight-rules.md"
        if rule_id != "lint.*":
            assert f'"{rule_id}"' in here or f"{rule_id}:" in here, f"no test for {rule_id}"


def test_model_chat_template_note_for_a_base_without_one(tmp_path, embedded_model_dir):
    """h14d: a base model without a chat template gets ChatML (note with the token rows' memory); the embedded
    instruct model under auto gets no note; an explicit choice is noted too."""
    base = Path(shutil.copytree(embedded_model_dir, tmp_path / "base"))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    tc = json.loads((base / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(tc))
    f = hp({"model": {"base": str(base)}}, gpu="T4").by_rule("model.chat_template")
    assert f and f[0].severity == INFO and "ChatML" in f[0].message and "<|im_end|>" in f[0].message
    assert "more at the peak" in f[0].message
    assert severity(hp({}), "model.chat_template") is None
    assert "Llama 3" in hp({"data": {"chat_template": "llama3"}}).by_rule("model.chat_template")[0].message
