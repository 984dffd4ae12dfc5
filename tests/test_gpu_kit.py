"""The GPU kit's CPU dry run: the same code as on a GPU, tiny shapes, every part.

So the kit is known to work before a GPU sees it (a GPU is lent only now and then, for
minutes). The dry run builds tiny random models with the embedded tokenizer and drives the
real commands: gpus, estimate, train (LoRA, QLoRA, full; packed + checkpointed), eval,
export, --gpus 1 DDP (and FSDP, refused on the CPU), and the plain-TRL throughput baseline.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KIT = REPO / "bench" / "gpu_kit.py"


def _kit(tmp_path: Path, embedded_model_dir: Path, *args: str, timeout: int = 1800) -> dict:
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(KIT), str(out), "--cpu-dry-run", "--work", str(tmp_path / "work"),
                        "--tokenizer", str(embedded_model_dir), *args],
                       capture_output=True, text=True, timeout=timeout)
    assert (out / "gpu_kit.json").exists(), r.stderr[-3000:]
    res = json.loads((out / "gpu_kit.json").read_text())
    res["_rc"] = r.returncode
    res["_md"] = (out / "gpu_kit.md").read_text()
    res["_logs"] = (out / "logs.txt").read_text() if (out / "logs.txt").exists() else ""
    return res


@pytest.mark.slow
@pytest.mark.timeout(2000)
def test_cpu_dry_run_runs_every_part(tmp_path, embedded_model_dir):
    res = _kit(tmp_path, embedded_model_dir)
    parts = res["parts"]
    assert res["mode"] == "cpu-dry-run"
    assert set(parts) == {"gpus", "train", "eval_export", "distributed", "throughput"}
    for name, p in parts.items():
        # throughput lists the speed-ups it could not measure (not installed here) as skipped
        not_installed = name == "throughput" and all("not installed" in s for s in p["skipped"])
        assert p["status"] == "done" or (p["status"] == "partial" and not_installed), (name, p, res["_logs"][-3000:])
    assert res["_rc"] == 0

    gpus = parts["gpus"]["rows"]
    assert gpus[0]["gpus_reported"] == 0 and gpus[0]["rc"] == 0

    train = {r["run"]: r for r in parts["train"]["rows"]}
    assert set(train) == {"embedded-lora", "embedded-qlora", "embedded-full", "1b-lora", "8b-qlora"}
    for key, r in train.items():
        assert r["rc"] == 0 and r["steps"] == 4, (key, r)
        assert math.isfinite(r["final_loss"]) and r["estimate_bytes"] > 0, (key, r)
        assert r["estimate_allocated_sum"] >= r["estimate_allocated_max"] > 0
    assert train["embedded-lora"]["speedups"]["padding_free"] is True  # the default, micro-batch 4
    assert train["8b-qlora"]["speedups"]["padding_free"] is False  # packed rows: TRL packs padding-free itself
    assert train["8b-qlora"]["checkpointing"] is True

    ee = {r["check"]: r for r in parts["eval_export"]["rows"]}
    assert ee["ftwizard eval"]["rc"] == 0 and ee["ftwizard export adapter,merged"]["rc"] == 0

    dist = {r["check"]: r for r in parts["distributed"]["rows"]}
    assert dist["--gpus 1 --strategy ddp"]["rc"] == 0
    assert dist["--gpus 1 --strategy ddp"]["engine"]["world_size"] == 1
    assert dist["--gpus 1 --strategy fsdp"]["rc"] == "expected"  # refused on the CPU, with a fix

    tp = {r["variant"]: r for r in parts["throughput"]["rows"]}
    assert tp["plain TRL script (defaults)"]["rc"] == 0 and tp["plain TRL script (defaults)"]["tokens_per_s"] > 0
    assert tp["ftwizard, no speed-up"]["rc"] == 0
    assert tp["ftwizard, no speed-up"]["speedups"]["padding_free"] is False
    assert tp["ftwizard default"]["tokens_per_s"] > 0
    assert any("Liger" in s for s in parts["throughput"]["skipped"])  # not installed here: said so

    md = res["_md"]
    assert "## 2. train: done" in md and "| 8b-qlora | 0 |" in md


def test_budget_skips_and_says_what(tmp_path, embedded_model_dir):
    """A part that runs out of time lists each thing it did not do; the rest still report."""
    res = _kit(tmp_path, embedded_model_dir, "--parts", "train,throughput", "--budget", "20", timeout=300)
    train = res["parts"]["train"]
    assert train["status"] in ("partial", "skipped") and train["rows"] == []  # which one depends on start-up time
    assert any(s.startswith(("train embedded-lora", "whole part")) for s in train["skipped"])
    assert res["parts"]["throughput"]["status"] in ("skipped", "partial")
    assert "skipped:" in res["_md"]
