"""Real preference training of the embedded model on the CPU: DPO with LoRA (stopped and resumed), QLoRA and full,
ORPO (on top of the DPO run: the "SFT first, then DPO" path through a run folder as model.base) and KTO.

Each run trains in this process through `ftwizard.training.trainer.train`, the function the trainer process calls,
with the run folder, events, stop file and checkpoints as in a detached run (tests/test_training.py covers the
process around it). The learning rates are far above the recipes' (5e-6 for LoRA DPO): with 2-3 steps on 8 pairs
a recipe rate would leave the margins at ~0, and the test could not tell training from nothing; the pre-flight
check (which `train` would run first) rightly warns about these rates, so it is not involved here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ftwizard.config import load_config
from ftwizard.errors import UserError
from ftwizard.rundir import EventWriter, RunDir
from helpers import tiny_preference_config, write_jsonl

pytestmark = pytest.mark.slow

LOG2 = math.log(2)
REWARD_KEYS = ("rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies")


def make_run(tmp: Path, name: str, objective: str, method: str, rows: int = 4, eval_rows: int = 0,
             **training) -> tuple[RunDir, object]:
    """A run folder as `ftwizard train` makes it. Batch = rows by default, so every step sees the same pairs and a
    falling loss means learning, not an easier batch."""
    tmp.mkdir(parents=True, exist_ok=True)
    training.setdefault("batch_size", rows)
    cfg = load_config(tiny_preference_config(tmp, objective, method, rows=rows, eval_rows=eval_rows, **training))
    run = RunDir(Path(cfg.runs_dir) / name)
    run.path.mkdir(parents=True)
    cfg.save(run.config)
    run.write_status(state="starting")
    return run, cfg


def train_once(run: RunDir, cfg, resume: bool = False) -> str:
    from ftwizard.training.trainer import train

    writer = EventWriter(run.events)
    try:
        state = train(run, cfg, writer, {"requested": False}, run.last_checkpoint() if resume else None,
                      log=lambda m: None)
        writer.write("system", event=state)
        run.write_status(state=state)
        return state
    finally:
        writer.close()


def events(run: RunDir, kind: str) -> list[dict]:
    return [e for e in run.iter_events() if e.get("kind") == kind]


def assert_adapter_loads(folder: Path, base: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert not (folder / "ref").exists()  # no reference adapter beside the trained one (the base is the reference)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(folder))
    b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert b and any(float(p.abs().sum()) > 0 for p in b)  # trained, not the zero init


@pytest.fixture(scope="module")
def dpo_lora(tmp_path_factory, embedded_model_dir):
    """DPO + LoRA for 3 steps, stopped after step 1 by the STOP file and resumed from that checkpoint."""
    run, cfg = make_run(tmp_path_factory.mktemp("dpo_lora"), "dpo-lora", "dpo", "lora", eval_rows=2,
                        learning_rate=5e-4, max_steps=3, eval_every=0)
    run.stop_file.write_text("")
    first = train_once(run, cfg)
    stopped_ckpt = run.last_checkpoint()
    with pytest.raises(UserError, match="has not finished"):  # an unfinished run cannot be a base
        from ftwizard.models.resolve import resolve_base

        resolve_base(str(run.path))
    run.stop_file.unlink()
    second = train_once(run, cfg, resume=True)
    return run, cfg, first, stopped_ckpt, second


def test_dpo_lora_learns_stops_resumes_and_exports(dpo_lora, embedded_model_dir):
    run, cfg, first, stopped_ckpt, second = dpo_lora
    assert (first, second) == ("stopped", "completed")
    assert stopped_ckpt is not None and stopped_ckpt.name == "checkpoint-1"
    train = events(run, "train")
    steps = [e["step"] for e in train]
    assert steps == [1, 2, 3]  # the resumed run continued at step 2, not from scratch
    resumed = [e for e in run.iter_events() if e.get("event") == "resumed"]
    assert resumed and resumed[0]["step"] == 1
    for e in train:
        assert all(isinstance(e.get(k), float) for k in REWARD_KEYS), e
    # DPO starts at log 2 (policy == reference); it must fall and the margin must grow
    assert abs(train[0]["loss"] - LOG2) < 1e-3
    assert train[-1]["loss"] < LOG2 - 0.01 and train[-1]["rewards_margins"] > train[0]["rewards_margins"]
    ev = events(run, "eval")
    assert ev and "eval_rewards_margins" in ev[-1] and "eval_rewards_accuracies" in ev[-1]
    data = next(e for e in run.iter_events() if e.get("event") == "data")
    assert data["objective"] == "dpo" and data["reference"] == "base with the adapter off"
    assert_adapter_loads(run.adapter, str(embedded_model_dir))
    out = subprocess.run([sys.executable, "-m", "ftwizard", "export", str(run.path), "--format", "adapter"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dpo_qlora(tmp_path, embedded_model_dir):
    run, cfg = make_run(tmp_path, "dpo-qlora", "dpo", "qlora", rows=2, learning_rate=5e-4, max_steps=2)
    assert train_once(run, cfg) == "completed"
    train = events(run, "train")
    assert abs(train[0]["loss"] - LOG2) < 1e-3 and train[-1]["loss"] < LOG2
    assert_adapter_loads(run.adapter, str(embedded_model_dir))


def test_dpo_full_holds_a_frozen_reference(tmp_path):
    run, cfg = make_run(tmp_path, "dpo-full", "dpo", "full", rows=2, learning_rate=1e-5, max_steps=2)
    assert train_once(run, cfg) == "completed"
    train = events(run, "train")
    assert abs(train[0]["loss"] - LOG2) < 1e-3 and train[-1]["loss"] < LOG2
    data = next(e for e in run.iter_events() if e.get("event") == "data")
    assert data["reference"] == "frozen copy"
    assert (run.model / "config.json").is_file() and (run.model / "tokenizer.json").is_file()


def test_orpo_on_top_of_a_finished_run(dpo_lora, tmp_path, embedded_model_dir):
    """ORPO with model.base = the finished DPO run: its adapter is merged into the base once, a fresh LoRA trains."""
    import yaml

    done, *_ = dpo_lora
    path = tiny_preference_config(tmp_path, "orpo", "lora", rows=4, eval_rows=0, learning_rate=5e-4, max_steps=2,
                                  batch_size=4)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["base"] = str(done.path)
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    run = RunDir(Path(cfg.runs_dir) / "orpo")
    run.path.mkdir(parents=True)
    cfg.save(run.config)
    assert train_once(run, cfg) == "completed"
    loaded = next(e for e in run.iter_events() if e.get("event") == "loading_model")
    merged = Path(loaded["path"])
    assert merged != embedded_model_dir and (merged / "config.json").is_file()
    train = events(run, "train")
    assert train[-1]["loss"] < train[0]["loss"]  # ORPO's loss is NLL + lambda * odds-ratio term
    assert all(k in train[-1] for k in REWARD_KEYS)
    assert_adapter_loads(run.adapter, str(merged))


def test_kto_from_labelled_answers(tmp_path, embedded_model_dir):
    run, cfg = make_run(tmp_path, "kto", "kto", "lora", rows=2, learning_rate=1e-3, max_steps=2, batch_size=4)
    rows = []
    for r in json.loads(json.dumps([json.loads(line) for line in Path(cfg.data.train).read_text().splitlines()])):
        rows.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        rows.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    write_jsonl(Path(cfg.data.train), rows)  # the unpaired format, 2 good and 2 bad answers
    assert train_once(run, cfg) == "completed"
    train = events(run, "train")
    assert all("kl" in e and "rewards_margins" in e for e in train)
    assert train[-1]["rewards_margins"] > train[0]["rewards_margins"]
    assert_adapter_loads(run.adapter, str(embedded_model_dir))
