"""`ftwizard check` (exit codes, JSON, --fix), fix_config, and the gate in front of `ftwizard train`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftwizard.config import load_config
from ftwizard.errors import UserError
from ftwizard.preflight import SCHEMA, fix_config, planned_edits, run_check

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "preflight"
DATA = FIXTURES / "data"


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True, timeout=timeout)


def write_config(tmp_path: Path, name: str = "c.yaml", **sections) -> Path:
    cfg = {"runs_dir": str(tmp_path / "runs"),
           "data": {"train": str(DATA / "sound_train.jsonl"), "eval": str(DATA / "sound_eval.jsonl"), "max_length": 128,
                    "task_type": "extraction"},
           "training": {"epochs": 2}}
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_check_sound_config_json(tmp_path):
    p = write_config(tmp_path)
    r = cli("check", str(p), "--json", "--gpu", "A10G")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["schema"] == SCHEMA and out["ok"] is True and out["counts"]["error"] == 0
    assert out["facts"]["target"]["name"] == "A10G" and out["estimate"]["verdict"] == "fits"
    assert out["facts"]["train"]["valid_rows"] == 300 and out["config"] == str(p.resolve())


def test_check_doomed_config_exits_1_with_ranked_report(tmp_path):
    p = write_config(tmp_path, training={"precision": "bf16", "learning_rate": 1e-2})
    r = cli("check", str(p), "--gpu", "T4")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pre-flight:") and "NOT ready" in lines[-1]
    err_at = r.stdout.index("ERROR precision.bf16_unsupported")
    assert err_at < r.stdout.index("warn  lr.range")  # errors first
    assert "fix: set training.precision: fp16" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_fix_writes_a_corrected_copy_and_never_the_original(tmp_path):
    p = write_config(tmp_path, training={"learning_rate": 1e-3, "warmup_ratio": 0.0, "batch_size": 1,
                                         "gradient_accumulation": 2, "precision": "bf16"})
    before = p.read_bytes()
    new = tmp_path / "fixed.yaml"
    r = cli("check", str(p), "--gpu", "T4", "--fix", "-o", str(new))
    assert r.returncode == 1  # the report is about the original
    assert p.read_bytes() == before
    fixed = load_config(new)
    assert fixed.training.learning_rate == 2e-4 and fixed.training.warmup_ratio == 0.05
    assert fixed.training.gradient_accumulation == 16 and fixed.training.precision == "fp16"
    assert "# Passes over the data" in new.read_text()  # commented, like `ftwizard init`
    r = cli("check", str(new), "--gpu", "T4", "--json")
    assert r.returncode == 0, r.stdout
    rules = {f["rule"] for f in json.loads(r.stdout)["findings"] if f["severity"] != "info"}
    assert not rules & {"lr.range", "warmup.none", "batch.effective", "precision.bf16_unsupported"}


def test_fix_refuses_unsafe_outputs(tmp_path):
    p = write_config(tmp_path)
    assert "needs -o" in cli("check", str(p), "--fix").stderr
    r = cli("check", str(p), "--fix", "-o", str(p))
    assert r.returncode == 1 and "never overwrites the original" in r.stderr
    other = tmp_path / "exists.yaml"
    other.write_text("keep me")
    r = cli("check", str(p), "--fix", "-o", str(other))
    assert r.returncode == 1 and "already exists" in r.stderr and other.read_text() == "keep me"


def test_unknown_gpu_and_rule_table(tmp_path):
    r = cli("check", str(write_config(tmp_path)), "--gpu", "GTX 9999")
    assert r.returncode == 1 and "unknown GPU" in r.stderr and "Traceback" not in r.stderr
    rules = json.loads(cli("check", "--rules", "--json").stdout)
    assert {"memory.does_not_fit", "data.eos", "lr.range"} <= {x["id"] for x in rules}


def test_fix_config_first_edit_per_field_wins_and_input_is_untouched(tmp_path):
    cfg = load_config(write_config(tmp_path, data={"max_length": 8192, "packing": True},
                                   model={"method": "full"},
                                   training={"batch_size": 16, "gradient_accumulation": 1, "learning_rate": 2e-5}))
    rep = run_check(cfg, gpu="T4")
    assert rep.by_rule("memory.does_not_fit")
    edits = planned_edits(rep)
    fields = [f for f, _, _ in edits]
    assert len(fields) == len(set(fields))
    fixed = fix_config(cfg, rep)
    assert cfg.training.batch_size == 16 and cfg.data.max_length == 8192  # unchanged
    assert run_check(fixed, gpu="T4").by_rule("memory.does_not_fit") == []


# ---- the gate in front of `ftwizard train` ------------------------------------------------------
def test_gate_refuses_errors_unless_forced(tmp_path):
    from ftwizard.preflight.gate import gate_train

    cfg = load_config(write_config(tmp_path, data={"train": str(DATA / "broken_train.jsonl")}))
    out = io.StringIO()
    with pytest.raises(UserError) as e:
        gate_train(cfg, config_path="c.yaml", stream=out)
    assert "lint.roles.unknown" in e.value.what and "--force" in e.value.fix
    assert "ERROR lint.roles.unknown" in out.getvalue()
    result = gate_train(cfg, force=True, stream=io.StringIO())
    assert result["forced"] is True and result["ok"] is False


def test_gate_passes_warnings_through(tmp_path):
    from ftwizard.preflight.gate import gate_train

    cfg = load_config(write_config(tmp_path, training={"warmup_ratio": 0.0}))
    out = io.StringIO()
    result = gate_train(cfg, stream=out)
    assert result["ok"] and result["forced"] is False and "warn  warmup.none" in out.getvalue()
    quiet = io.StringIO()
    gate_train(load_config(write_config(tmp_path, "d.yaml")), stream=quiet)
    assert quiet.getvalue() == ""  # a clean run starts without noise


@pytest.mark.slow
def test_train_refuses_a_doomed_run_and_saves_warnings_of_a_started_one(tmp_path):
    bad = write_config(tmp_path, "bad.yaml", data={"train": str(DATA / "broken_train.jsonl")})
    r = cli("train", str(bad), "--name", "refused")
    assert r.returncode == 1 and "lint.roles.unknown" in r.stderr and "--force" in r.stderr
    assert not (tmp_path / "runs" / "refused").exists()

    warn = write_config(tmp_path, "warn.yaml", training={"warmup_ratio": 0.0, "max_steps": 1, "save_every": 0,
                                                         "eval_every": 0})
    r = cli("train", str(warn), "--name", "started", "--detach", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    try:
        assert "warmup.none" in r.stderr
        saved = json.loads((Path(info["path"]) / "preflight.json").read_text())  # there before the trainer starts
        assert saved["schema"] == SCHEMA and saved["forced"] is False
        assert [f["rule"] for f in saved["findings"] if f["severity"] == "warning"] == ["warmup.none"]
    finally:
        import os
        import signal

        try:
            os.kill(info["pid"], signal.SIGKILL)  # the trainer itself is not under test here
        except ProcessLookupError:
            pass
