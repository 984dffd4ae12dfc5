"""The pre-flight gate lives in the launcher: no start and no resume can skip it.

The wizard's Train step calls `start_run(cfg)` directly (as before this gate existed): a
doomed config is refused there, with the report attached for the screen, and nothing is
created. These tests need no trainer process: a refused start never spawns one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftwizard.config import load_config
from ftwizard.rundir import RunDir
from tests.helpers import tiny_chat_rows, tiny_config, write_jsonl

DATA = Path(__file__).resolve().parent / "fixtures" / "preflight" / "data"


def broken_config(tmp_path):
    cfg = load_config(tiny_config(tmp_path))
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"train": DATA / "broken_train.jsonl"})})


def test_start_run_refuses_errors_without_confirmation_and_creates_nothing(tmp_path):
    from ftwizard.preflight.gate import PreflightBlocked
    from ftwizard.training.launch import start_run

    cfg = broken_config(tmp_path)
    with pytest.raises(PreflightBlocked) as e:
        start_run(cfg, detach=True)  # what the wizard's Train step calls
    rep = e.value.report
    assert rep.errors and "lint.roles.unknown" in rep.rules_hit("error")
    assert "lint.roles.unknown" in e.value.what and "confirm" in e.value.fix
    runs = Path(cfg.runs_dir)
    assert not runs.exists() or not any(runs.iterdir())


def test_a_report_for_another_config_is_not_trusted(tmp_path):
    """A screen shows a clean report, then the user changes the data: the gate checks again."""
    from ftwizard.preflight.gate import PreflightBlocked, preflight_report
    from ftwizard.training.launch import start_run

    good = load_config(tiny_config(tmp_path))
    report = preflight_report(good)
    assert report.ok and report.facts["config_hash"]
    with pytest.raises(PreflightBlocked):
        start_run(broken_config(tmp_path), preflight=report)


def fake_stopped_run(tmp_path, cfg) -> RunDir:
    """A stopped run folder as the trainer leaves it (config, status, a checkpoint), without training."""
    run = RunDir(tmp_path / "runs" / "old")
    (run.checkpoints / "checkpoint-2").mkdir(parents=True)
    (run.checkpoints / "checkpoint-2" / "trainer_state.json").write_text("{}")
    cfg.save(run.config)
    run.write_status(state="stopped", step=2, max_steps=4)
    return run


def test_resume_passes_the_gate(tmp_path):
    from ftwizard.preflight.gate import PreflightBlocked, config_hash, gate_resume
    from ftwizard.training.launch import resume_run

    cfg = broken_config(tmp_path)
    run = fake_stopped_run(tmp_path, cfg)
    with pytest.raises(PreflightBlocked) as e:  # a run from before the gate, whose data is broken
        resume_run(run, detach=True)
    assert "resume old --force" in e.value.fix and "not resumed" in e.value.what
    assert not (run.path / "preflight.json").exists() and run.read_status()["state"] == "stopped"

    # a run whose preflight.json judged this config and was confirmed is not asked again
    saved = {"ok": False, "forced": True, "facts": {"config_hash": config_hash(load_config(run.config))}, "mark": 1}
    (run.path / "preflight.json").write_text(json.dumps(saved))
    assert gate_resume(run.path, load_config(run.config))["mark"] == 1
    # ...but one made for another config is
    saved["facts"]["config_hash"] = "0" * 16
    (run.path / "preflight.json").write_text(json.dumps(saved))
    with pytest.raises(PreflightBlocked):
        gate_resume(run.path, load_config(run.config))


def test_forced_resume_saves_a_fresh_preflight(tmp_path):
    from ftwizard.preflight.gate import config_hash, gate_resume

    cfg = broken_config(tmp_path)
    run = fake_stopped_run(tmp_path, cfg)
    result = gate_resume(run.path, load_config(run.config), force=True)
    saved = json.loads((run.path / "preflight.json").read_text())
    assert saved["forced"] is True and saved["ok"] is False == result["ok"]
    assert saved["facts"]["config_hash"] == config_hash(load_config(run.config))


def test_apply_one_fix_or_all(tmp_path):
    from ftwizard.preflight.fix import apply_fixes
    from ftwizard.preflight.gate import preflight_report

    write_jsonl(tmp_path / "t.jsonl", tiny_chat_rows(16))
    cfg = load_config(tiny_config(tmp_path, learning_rate=0.5, warmup_ratio=0.0))
    rep = preflight_report(cfg)
    assert {"lr.range", "warmup.none"} <= rep.rules_hit("warning")
    one, edits = apply_fixes(cfg, rep, rules=["lr.range"])
    assert edits == [("training.learning_rate", 2e-4, "lr.range")]
    assert one.training.learning_rate == 2e-4 and one.training.warmup_ratio == 0.0
    assert cfg.training.learning_rate == 0.5  # the input is not changed
    every, edits = apply_fixes(cfg, rep)
    assert {f for f, _, _ in edits} >= {"training.learning_rate", "training.warmup_ratio"}
    assert not preflight_report(every).rules_hit("warning") & {"lr.range", "warmup.none"}


def test_the_wizard_can_gate_without_importing_transformers(tmp_path):
    """The wizard's process never imports transformers: with isolated=True the gate's check runs in a
    child process and comes back as the same Report (token lengths included, for the time estimate)."""
    import subprocess
    import sys

    from ftwizard.preflight.gate import preflight_report

    good = load_config(tiny_config(tmp_path))
    here, there = preflight_report(good), preflight_report(good, isolated=True)
    assert here.rules_hit() == there.rules_hit() and here.facts["config_hash"] == there.facts["config_hash"]
    assert there.train_lengths == here.train_lengths and len(there.train_lengths) == 16
    broken_config(tmp_path).save(tmp_path / "broken.yaml")
    code = ("import sys\n"
            "from ftwizard.config import load_config\n"
            "from ftwizard.preflight.gate import PreflightBlocked\n"
            "from ftwizard.training.launch import start_run\n"
            f"cfg = load_config({str(tmp_path / 'broken.yaml')!r})\n"
            "try:\n    start_run(cfg, isolated=True)\nexcept PreflightBlocked as e:\n"
            "    print('BLOCKED', sorted(e.report.rules_hit('error')))\n"
            "heavy = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "BLOCKED [" in r.stdout and "'lint.roles.unknown'" in r.stdout and "HEAVY []" in r.stdout, \
        r.stdout + r.stderr
