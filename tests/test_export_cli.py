"""`ftwizard export` refusals: each is a clear message before any work, and nothing is overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftwizard.cli import main

from helpers import tiny_config


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A run folder shaped like a finished LoRA run (no weights: these tests stop before loading any)."""
    cfg = tiny_config(tmp_path, "lora")
    run = tmp_path / "runs" / "done"
    (run / "adapter").mkdir(parents=True)
    shutil.copy(cfg, run / "config.yaml")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "status.json").write_text(json.dumps({"state": "completed", "step": 4}))
    return run


def run_cli(capsys, *args) -> tuple[int, str]:
    rc = main(["export", *args])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_unknown_format(finished_run, capsys):
    rc, out = run_cli(capsys, str(finished_run), "--format", "adapter,onnx")
    assert rc == 1 and "unknown export format(s): onnx" in out and "Traceback" not in out


def test_existing_export_is_never_overwritten(finished_run, capsys):
    exp = finished_run / "export"
    exp.mkdir()
    (exp / "README.md").write_text("mine")
    rc, out = run_cli(capsys, str(finished_run), "--format", "adapter")
    assert rc == 1 and "never overwritten" in out and "--force" in out
    assert (exp / "README.md").read_text() == "mine"


def test_q4_k_m_without_the_llama_cpp_runtime_says_what_to_do(finished_run, capsys, monkeypatch):
    from ftwizard.export import runtime

    monkeypatch.setenv("PATH", str(finished_run))  # no llama-quantize anywhere
    monkeypatch.delenv("FTWIZARD_LLAMA_QUANTIZE", raising=False)
    monkeypatch.setattr(runtime, "available", lambda: False)  # as on a machine without llama-cpp-python
    rc, out = run_cli(capsys, str(finished_run), "--quant", "q4_k_m")
    assert rc == 1 and "needs the llama.cpp runtime" in out and "python -m ftwizard.export.gguf" in out
    assert "--quant q8_0" in out


def test_relative_run_and_out_paths_are_absolute_before_they_reach_the_worker(finished_run, monkeypatch):
    from ftwizard.export.launch import ExportRequest

    monkeypatch.chdir(finished_run.parent.parent)
    req = ExportRequest(Path("runs/done"), out=Path("exp"))
    argv = req.argv(Path("err.json"))
    assert argv[3] == str(finished_run) and Path(argv[3]).is_absolute()
    assert str(finished_run.parent.parent / "exp") in argv and req.out_dir().is_absolute()
    assert "--max-new-tokens" not in argv  # sized from the data by the worker


def test_unknown_quant(finished_run, capsys):
    rc, out = run_cli(capsys, str(finished_run), "--quant", "q3_weird")
    assert rc == 1 and "unknown GGUF quantisation" in out


def test_push_offline_fails_clearly(finished_run, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    rc, out = run_cli(capsys, str(finished_run), "--push-to-hub", "me/model")
    assert rc == 1 and "network is off" in out
    assert "hf_secret_value" not in out
    assert not (finished_run / "export").exists()


def test_push_needs_a_token(finished_run, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    rc, out = run_cli(capsys, str(finished_run), "--push-to-hub", "me/model")
    assert rc == 1 and "HF_TOKEN" in out
    rc, out = run_cli(capsys, str(finished_run), "--push-to-hub", "not-a-repo-id")
    assert rc == 1 and "OWNER/NAME" in out


def test_unfinished_run_is_refused(finished_run, capsys):
    (finished_run / "adapter" / "adapter_config.json").unlink()
    (finished_run / "status.json").write_text(json.dumps({"state": "stopped", "step": 2}))
    rc, out = run_cli(capsys, str(finished_run))
    assert rc == 1 and "has no final adapter/" in out and "resume" in out


def test_missing_run(tmp_path, capsys):
    rc, out = run_cli(capsys, "nope", "--runs-dir", str(tmp_path))
    assert rc == 1 and "no run named 'nope'" in out


def test_card_eval_table_from_the_eval_summary(tmp_path):
    from ftwizard.export.card import eval_table

    assert eval_table(tmp_path) is None  # no eval yet: the card says so instead
    (tmp_path / "summary.json").write_text(json.dumps({
        "task": "json", "primary_metric": "field_f1",
        "metrics": [{"name": "json_parse_rate"}, {"name": "field_f1"}],
        "models": [{"id": "base", "label": "base", "metrics": {"json_parse_rate": 0.0, "field_f1": 0.0}},
                   {"id": "checkpoint-10", "label": "step 10", "metrics": {"json_parse_rate": 1.0, "field_f1": 0.2708}}],
        "verdict": {"beats_baseline": True}}))
    t = eval_table(tmp_path)
    assert "| model | json_parse_rate | field_f1 |" in t
    assert "| step 10 | 100% | 27% |" in t and "| base | 0% | 0% |" in t
    assert "beats the baseline on field_f1: yes" in t
