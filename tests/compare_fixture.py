"""Three finished run folders with known curves, configs and one eval summary, for the
compare view's tests and snapshots (the trainer is exercised in test_compare_cli's slow test)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import yaml

from ftwizard.rundir import EventWriter, RunDir

RUNS = {  # name: (learning rate, lora r, steps, final level)
    "lr-2e-4": (2e-4, 16, 60, 0.55),
    "lr-1e-4": (1e-4, 16, 60, 0.80),
    "lr-4e-4-r32": (4e-4, 32, 40, 0.40),
}


def make_runs(runs_dir: Path) -> list[RunDir]:
    out = []
    t0 = 1_790_000_000.0
    for k, (name, (lr, r, steps, floor)) in enumerate(RUNS.items()):
        run = RunDir(runs_dir / name)
        run.path.mkdir(parents=True, exist_ok=True)
        cfg = {"name": name, "runs_dir": str(runs_dir), "model": {"base": "embedded", "method": "lora"},
               "data": {"train": "/data/tickets/train.jsonl", "eval": "/data/tickets/eval.jsonl", "max_length": 256},
               "lora": {"r": r, "alpha": 2 * r, "dropout": 0.05},
               "training": {"learning_rate": lr, "max_steps": steps, "batch_size": 2, "seed": 42}}
        run.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        w = EventWriter(run.events)
        for s in range(1, steps + 1):
            w.write("train", step=s, loss=round(floor + 2.2 * math.exp(-s * lr * 250), 4), learning_rate=lr)
            if s % 20 == 0:
                w.write("eval", step=s, eval_loss=round(floor + 0.15 + 1.8 * math.exp(-s * lr * 250), 4))
        w.write("system", event="completed")
        w.close()
        run.write_status(state="completed", step=steps, max_steps=steps, started_at=t0 + k * 600,
                         ended_at=t0 + k * 600 + 300, output=str(run.adapter))
        out.append(run)
    ev = out[0].eval_dir
    ev.mkdir()
    (ev / "summary.json").write_text(json.dumps({
        "version": 2, "task": "json", "primary_metric": "field_score",
        "metrics": [{"name": "field_score"}, {"name": "json_valid"}],
        "models": [{"id": "base", "label": "base", "kind": "base", "metrics": {"field_score": 0.0, "json_valid": 0.0}},
                   {"id": "final", "label": "final", "kind": "final", "metrics": {"field_score": 0.47, "json_valid": 1.0}}],
        "verdict": {"tuned": "final", "beats_baseline": True}}))
    time.sleep(0)
    return out
