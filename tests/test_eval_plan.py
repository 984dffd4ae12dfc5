"""Planning an evaluation (which models, which rows) without loading a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ftwizard.config import load_config
from ftwizard.errors import UserError
from ftwizard.evaluation import launch
from ftwizard.evaluation.samples import load_samples, with_few_shot
from ftwizard.rundir import RunDir

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config, write_jsonl  # noqa: E402


def _run_with_checkpoints(tmp_path: Path, steps: list[int], final_step: int | None, evals: dict[int, float]) -> RunDir:
    run = RunDir(tmp_path / "runs" / "r")
    for s in steps:
        d = run.checkpoints / f"checkpoint-{s}"
        d.mkdir(parents=True)
        (d / "adapter_config.json").write_text("{}")
    if final_step is not None:
        run.adapter.mkdir(parents=True)
        (run.adapter / "adapter_config.json").write_text("{}")
    run.path.mkdir(parents=True, exist_ok=True)
    run.status_file.write_text(json.dumps({"state": "completed", "step": final_step}))
    run.events.write_text("".join(json.dumps({"kind": "eval", "step": s, "eval_loss": v}) + "\n" for s, v in evals.items()))
    return run


def test_plan_models_all_best_final(tmp_path):
    cfg = load_config(tiny_config(tmp_path))
    run = _run_with_checkpoints(tmp_path, [10, 20, 30], 30, {10: 1.2, 20: 0.9, 30: 1.0})
    ids = lambda models: [m["id"] for m in models]  # noqa: E731
    # the base + k-shot row is planned by default (evaluation.few_shot, 3) when the training file exists
    assert ids(launch.plan_models(cfg, run, "all")) == ["base", "base-3shot", "checkpoint-10", "checkpoint-20",
                                                         "final"]
    assert ids(launch.plan_models(cfg, run, "best", few_shot=0)) == ["base", "checkpoint-20", "final"]
    assert ids(launch.plan_models(cfg, run, "final", few_shot=2)) == ["base", "base-2shot", "final"]
    assert ids(launch.plan_models(cfg, run, "all", baseline_only=True)) == ["base", "base-3shot"]
    no_train = cfg.model_copy(update={"data": cfg.data.model_copy(update={"train": tmp_path / "gone.jsonl"})})
    assert ids(launch.plan_models(no_train, run, "final")) == ["base", "final"]  # no rows to show: no k-shot row
    final = launch.plan_models(cfg, run, "final")[-1]
    assert final["kind"] == "adapter" and final["path"] == str(run.adapter) and final["step"] == 30


def test_spec_refuses_training_file_and_missing_eval(tmp_path):
    cfg = load_config(tiny_config(tmp_path))
    models = launch.plan_models(cfg, None)
    with pytest.raises(UserError, match="training file"):
        launch.make_spec(cfg, models, run=None, eval_file=cfg.data.train, max_samples=None, batch_size=None)
    no_eval = cfg.model_copy(update={"data": cfg.data.model_copy(update={"eval": None})})
    with pytest.raises(UserError, match="no held-out file"):
        launch.make_spec(no_eval, models, run=None, eval_file=None, max_samples=None, batch_size=None)
    spec = launch.make_spec(cfg, models, run=None, eval_file=None, max_samples=3, batch_size=None)
    assert spec["eval_file"] == str(cfg.data.eval) and spec["max_samples"] == 3
    assert spec["task"] == "label" and spec["metric"] is None
    spec = launch.make_spec(cfg, models, run=None, eval_file=None, max_samples=3, batch_size=None, metric="accuracy")
    assert spec["metric"] == "accuracy"
    with pytest.raises(UserError, match="does not apply") as e:
        launch.make_spec(cfg, models, run=None, eval_file=None, max_samples=3, batch_size=None, metric="rouge_l")
    assert "accuracy, macro_f1, exact_match, eval_loss" in e.value.fix
    math_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"task_type": "math"})})
    assert launch.make_spec(math_cfg, models, run=None, eval_file=None, max_samples=3, batch_size=None)["task"] == "math"
    scored = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"scorer": "mine:check"})})
    spec = launch.make_spec(scored, models, run=None, eval_file=None, max_samples=3, batch_size=None)
    assert spec["scorer"] == "mine:check" and spec["metric"] == "custom:check"  # your scorer leads unless told


def test_samples_split_prompt_and_reference_with_system_prompt(tmp_path):
    f = write_jsonl(tmp_path / "e.jsonl", [
        {"instruction": "Add", "input": "2 and 3", "output": "5"},
        {"instruction": "Add", "input": "1 and 1", "output": "2"},
    ])
    s = load_samples(f, system_prompt="Be brief.", max_samples=1)
    assert len(s) == 1 and s[0].reference == "5" and s[0].row == 1
    assert s[0].prompt[0] == {"role": "system", "content": "Be brief."} and s[0].prompt[-1]["role"] == "user"
    shots = load_samples(f, system_prompt="Be brief.")[1:]
    fs = with_few_shot(s, shots)[0]
    assert [m["role"] for m in fs.prompt] == ["system", "user", "assistant", "user"]
    assert fs.prompt[2]["content"] == "2" and fs.reference == "5"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "just text"}])
    with pytest.raises(UserError, match="no prompt/answer split"):
        load_samples(bad)
