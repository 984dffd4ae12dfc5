"""`ftwizard runs --compare`, `runs --json`'s comparison fields, `runs --summary`, and
`train --from RUN --set KEY=VALUE` (overrides through the config's own validation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ftwizard.rundir import RunDir, latest_by_step

from compare_fixture import make_runs
from helpers import tiny_config


def cli(*args, timeout=900, **kw):
    env = dict(os.environ, COLUMNS="80", LINES="24", **kw.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


@pytest.fixture
def runs(tmp_path):
    return make_runs(tmp_path / "runs")


def _expected(run: RunDir) -> dict:
    train = latest_by_step(list(run.iter_events()), "train")
    evals = latest_by_step(list(run.iter_events()), "eval")
    best = min(train, key=lambda e: e["loss"])
    return {"final_loss": train[-1]["loss"], "best_loss": best["loss"], "best_step": best["step"],
            "final_eval_loss": evals[-1]["eval_loss"], "best_eval_loss": min(e["eval_loss"] for e in evals)}


def test_compare_json_lists_only_differing_keys_and_each_runs_losses(runs, tmp_path):
    r = cli("runs", "--runs-dir", str(tmp_path / "runs"), "--compare", "lr-2e-4", "lr-4e-4-r32", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["config_diff"] == {"lora.r": [16, 32], "lora.alpha": [32, 64],
                                  "training.learning_rate": [0.0002, 0.0004], "training.max_steps": [60, 40]}
    assert out["same_keys"] > 5
    for got, run in zip(out["runs"], (runs[0], runs[2])):
        assert got["name"] == run.name and got["state"] == "completed"
        assert {k: got[k] for k in _expected(run)} == _expected(run)
        assert got["curve"]["steps"] == [e["step"] for e in latest_by_step(list(run.iter_events()))]
    assert out["runs"][0]["eval"]["metrics"] == {"field_score": 0.47, "json_valid": 1.0}
    assert out["runs"][1]["eval"] is None


def test_compare_text_fits_80_columns_with_plot_results_and_diff(runs, tmp_path):
    r = cli("runs", "--runs-dir", str(tmp_path / "runs"), "--compare", "lr-2e-4", "lr-1e-4", "lr-4e-4-r32")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "┤" in r.stdout and "■ lr-2e-4" in r.stdout  # the overlaid plot and its legend
    row = next(line for line in lines if line.startswith("training.learning_rate"))
    assert row.split()[1:] == ["0.0002", "0.0001", "0.0004"]
    assert any(line.startswith("field_score") for line in lines)
    assert not any(line.startswith("data.train") for line in lines)  # equal everywhere: not listed


def test_compare_needs_two_runs_and_names_a_missing_one(runs, tmp_path):
    r = cli("runs", "--runs-dir", str(tmp_path / "runs"), "--compare", "lr-2e-4")
    assert r.returncode == 2 and "two or more" in r.stderr
    r = cli("runs", "--runs-dir", str(tmp_path / "runs"), "--compare", "lr-2e-4", "nope", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["error"] == "no run named 'nope'"


def test_runs_json_carries_the_comparison_fields(runs, tmp_path):
    r = cli("runs", "--runs-dir", str(tmp_path / "runs"), "--json")
    assert r.returncode == 0, r.stderr
    by_name = {d["name"]: d for d in json.loads(r.stdout)}
    for run in runs:
        assert {k: by_name[run.name][k] for k in _expected(run)} == _expected(run)


def test_summary_on_demand_has_metrics_eval_table_and_config(runs, tmp_path):
    r = cli("runs", "--runs-dir", str(tmp_path / "runs"), "--summary", "lr-2e-4")
    assert r.returncode == 0, r.stderr
    text = (runs[0].path / "summary.md").read_text()
    assert r.stdout == text
    exp = _expected(runs[0])
    assert f"| best train loss | {exp['best_loss']:.4g} | {exp['best_step']} |" in text
    final_row = next(line for line in text.splitlines() if line.startswith("| final |"))  # eval/summary.json's table
    assert "47" in final_row
    assert "learning_rate: 0.0002" in text and "(file not found now)" in text  # fixture data paths do not exist


def test_set_is_validated_like_the_config_file(runs, tmp_path):
    base = ("train", "--runs-dir", str(tmp_path / "runs"), "--from", "lr-2e-4")
    r = cli(*base, "--set", "training.learnig_rate=1e-4", "--json")
    assert r.returncode == 2
    err = json.loads(r.stdout)
    assert "learnig_rate" in err["error"] and "learning_rate" in err["error"]  # did you mean
    r = cli(*base, "--set", "training.learning_rate=-1")
    assert r.returncode == 2 and "training.learning_rate" in r.stderr and "--set" in r.stderr
    r = cli(*base, "--set", "nonsense")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    r = cli("train", str(tmp_path / "x.yaml"), "--from", "lr-2e-4", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and "not both" in r.stderr


@pytest.mark.slow
def test_train_from_run_with_one_change_then_compare(tmp_path, embedded_model_dir):
    cfg = tiny_config(tmp_path, save_every=0, max_steps=3)
    r = cli("train", str(cfg), "--name", "base")
    assert r.returncode == 0, r.stderr
    from test_notify import Hook

    hook = Hook()  # the second run's trainer calls back a real local server when it completes
    try:
        r = cli("train", "--from", "base", "--runs-dir", str(tmp_path / "runs"), "--set", "training.learning_rate=1e-4",
                env={"FTWIZARD_NOTIFY_URL": hook.url})
        assert r.returncode == 0, r.stderr
        assert hook.event.wait(10)
        body = json.loads(hook.received[0]["body"])
        assert body["run"] == "base-2" and body["event"] == "completed" and body["step"] == 3
        assert body["path"].endswith("base-2/adapter")
    finally:
        hook.close()
    second = RunDir(tmp_path / "runs" / "base-2")
    assert second.status()["state"] == "completed"
    assert yaml.safe_load(second.config.read_text())["training"]["learning_rate"] == 1e-4
    for name in ("base", "base-2"):  # written by the trainer as the run ended
        summary = (tmp_path / "runs" / name / "summary.md").read_text()
        assert "**completed**" in summary and "| final train loss |" in summary and "SHA-256" in summary
    r = cli("runs", "--runs-dir", str(tmp_path / "runs"), "--compare", "base", "base-2", "--json")
    out = json.loads(r.stdout)
    assert out["config_diff"] == {"training.learning_rate": [0.001, 0.0001]}
    a, b = out["runs"]
    assert len(a["curve"]["loss"]) == len(b["curve"]["loss"]) == 3
    assert a["curve"]["loss"][0] == pytest.approx(b["curve"]["loss"][0])  # same seed, same first step
    assert a["final_loss"] < b["final_loss"]  # 10x the learning rate learns faster in 3 steps


def test_summary_of_a_failed_run_keeps_the_whole_message(runs):
    from ftwizard.summary import build_summary

    msg = "the loss became NaN or infinite at step 12; lower training.learning_rate (now 0.0004) by 2-10x | see log"
    runs[1].write_status(state="failed", message=msg)
    text = build_summary(runs[1])
    assert "| state | **failed** |" in text
    assert msg.replace("|", "\\|") in text
    assert "No evaluation yet: `ftwizard eval lr-1e-4`." in text
