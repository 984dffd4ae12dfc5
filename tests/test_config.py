"""The typed run config: YAML round trip, clear errors with field paths, `ftwizard init`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from ftwizard.config import RunConfig, commented_yaml, default_config, load_config
from ftwizard.errors import UserError


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_round_trip_and_relative_paths(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text("{}\n")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data:\n  train: d/train.jsonl\ntraining:\n  learning_rate: 1.0e-4\n  epochs: 2\n")
    cfg = load_config(cfg_file)
    assert cfg.data.train == (tmp_path / "d" / "train.jsonl").resolve()
    assert cfg.training.learning_rate == 1e-4 and cfg.training.epochs == 2
    assert cfg.runs_dir == (tmp_path / "runs").resolve()
    again = RunConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


@pytest.mark.parametrize("body, path, found", [
    ("data:\n  train: x.jsonl\nmodel:\n  method: qlorra\n", "model.method", "'qlorra'"),
    ("data:\n  train: x.jsonl\ntraining:\n  learning_rate: -1\n", "training.learning_rate", "-1"),
    ("data:\n  train: x.jsonl\ntraining:\n  batch_size: two\n", "training.batch_size", "'two'"),
    ("model:\n  method: lora\n", "data", None),
])
def test_bad_values_name_field_found_and_allowed(tmp_path, body, path, found):
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(UserError) as ei:
        load_config(f)
    text = ei.value.render()
    assert path in text and str(f) in text
    if found:
        assert f"found {found}" in text


def test_unknown_key_suggests_the_right_one(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("data:\n  train: x.jsonl\ntraining:\n  learnig_rate: 0.001\n")
    with pytest.raises(UserError) as ei:
        load_config(f)
    assert "training.learnig_rate" in ei.value.what and "did you mean 'learning_rate'" in ei.value.what


def test_yaml_syntax_error_gives_line(tmp_path):
    f = tmp_path / "syntax.yaml"
    f.write_text("data:\n  train: [unclosed\n")
    with pytest.raises(UserError) as ei:
        load_config(f)
    assert f"{f}:" in ei.value.where and "not valid YAML" in ei.value.what


def test_bad_config_cli_exits_1_with_path_and_no_traceback(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("data:\n  train: x.jsonl\nmodel:\n  method: qlorra\n")
    r = run_cli("train", str(f))
    assert r.returncode == 1
    assert "model.method" in r.stderr and "'full', 'lora' or 'qlora'" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_init_writes_a_commented_config_that_loads(tmp_path):
    r = run_cli("init", "-o", "cfg.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "cfg.yaml").read_text()
    assert "# Adapter rank" in text and "base: embedded" in text
    cfg = load_config(tmp_path / "cfg.yaml")
    assert cfg.data.train.is_file() and cfg.data.eval.is_file()
    assert cfg.model.method == "lora"
    r = run_cli("init", "-o", "cfg.yaml", cwd=tmp_path)  # never overwrites without --force
    assert r.returncode == 1 and "already exists" in r.stderr


def test_commented_yaml_round_trips(tmp_path):
    cfg = default_config(tmp_path / "t.jsonl")
    assert RunConfig.model_validate(yaml.safe_load(commented_yaml(cfg))) == cfg
