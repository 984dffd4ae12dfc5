"""A non-chat format trains for real: an Alpaca file goes through `ftwizard train` unchanged.

Every format's path into the trainer (detection, conversion, templating, masking) is
checked cheaply in test_data_tokens.py against the trainer's own encoder; this one run
proves the whole chain on CPU with the embedded model.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftwizard.rundir import RunDir

pytestmark = pytest.mark.slow
FIX = Path(__file__).parent / "fixtures" / "data"


def test_alpaca_file_trains(tmp_path):
    cfg = {"runs_dir": str(tmp_path / "runs"), "model": {"base": "embedded", "method": "lora"},
           "data": {"train": str(FIX / "valid_alpaca.jsonl"), "max_length": 128},
           "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
           "training": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "warmup_ratio": 0.0,
                        "scheduler": "constant", "eval_every": 0, "save_every": 0, "log_every": 1}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "ftwizard", "train", str(path), "--name", "alpaca"],
                       capture_output=True, text=True, timeout=600)
    run = RunDir(tmp_path / "runs" / "alpaca")
    assert r.returncode == 0, r.stderr + (run.log.read_text() if run.log.exists() else "")
    assert run.status()["state"] == "completed" and run.status()["step"] == 2
    losses = [e["loss"] for e in run.iter_events() if e["kind"] == "train" and e.get("loss") is not None]
    assert losses and all(0 < x < 20 for x in losses)
