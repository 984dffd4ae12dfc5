"""bench/memory_accuracy.py: the dry run works anywhere (no torch); the real run on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "memory_accuracy.py"


def test_dry_run_prints_estimates_and_writes_json(tmp_path):
    out = tmp_path / "r.json"
    code = (f"import runpy, sys; sys.argv = ['memory_accuracy.py', '--dry-run', '--out', {str(out)!r}]; "
            f"runpy.run_path({str(BENCH)!r}, run_name='__main__')")
    wrapped = f"import sys\ntry:\n    exec({code!r})\nexcept SystemExit as e:\n    pass\nprint('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout  # estimates only: no torch
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {r["model"] for r in rows} == {"embedded", "1b", "3b", "8b"}
    assert {r["method"] for r in rows} == {"full", "lora", "qlora"}
    assert {r["seq"] for r in rows} == {512, 2048} | {1024}
    # the 8B full rows are predicted not to fit an 80 GB H100 and must OOM in the real run
    assert all(r["verdict"] == "does_not_fit" for r in rows if r["model"] == "8b" and r["method"] == "full")
    assert all(r["verdict"] == "fits" for r in rows if r["method"] != "full")
    for r in rows:
        assert r["estimate_reserved_bytes"] == r["estimate_bytes"] - r["estimate_parts"]["cuda_context"]


@pytest.mark.gpu
def test_real_run_on_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(BENCH), "--models", "embedded", "--seqs", "512", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert all("error_pct" in r for r in rows if not r.get("oom"))


@pytest.mark.slow
def test_gpu_code_path_runs_on_cpu_with_a_tiny_shape(tmp_path):
    """The GPU run's code (model build, NF4 swap, peft, checkpointing toggles, padded
    batches) exercised on a CPU with a tiny shape, so a GPU session does not find its bugs."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(BENCH), "--device", "cpu", "--models", "tiny", "--seqs", "64",
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 7 and all(len(r["losses"]) == 3 and not r["oom"] for r in rows)
