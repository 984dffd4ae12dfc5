"""Seconds per optimizer step of each method through `ftwizard train` (CPU or GPU).

    python bench/method_speed.py [--steps 10] [--batch 2] [--max-length 128] [--methods lora,qlora,full]

Trains the embedded model on the sample data; the time is the Trainer's train_runtime
(imports and model loading excluded) divided by the steps. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--methods", default="lora,qlora,full")
    ap.add_argument("--base", default="embedded")
    a = ap.parse_args()
    print(f"{'method':8} {'s/step':>8} {'tokens/s':>9} {'peak mem GB':>12}   (batch {a.batch}, {a.max_length} tokens)")
    with tempfile.TemporaryDirectory() as d:
        for method in a.methods.split(","):
            cfg = {"name": method, "runs_dir": d, "model": {"base": a.base, "method": method},
                   "data": {"train": str(REPO / "sample_data" / "train.jsonl"), "max_length": a.max_length},
                   "training": {"max_steps": a.steps, "batch_size": a.batch, "gradient_accumulation": 1,
                                "save_every": 0, "eval_every": 0, "learning_rate": 1e-4}}
            path = Path(d) / f"{method}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            subprocess.run([sys.executable, "-m", "ftwizard", "train", str(path), "--force"],  # a speed probe
                           check=True, stdout=subprocess.DEVNULL)
            events = [json.loads(l) for l in (Path(d) / method / "events.jsonl").read_text().splitlines()]
            end = [e for e in events if e.get("event") == "train_end"][-1]
            train = [e for e in events if e.get("kind") == "train"]
            tokens = train[-1].get("tokens") or 0
            peak = max(e.get("memory_gb", 0) for e in train)
            print(f"{method:8} {end['train_runtime'] / a.steps:8.2f} {tokens / end['train_runtime']:9.0f} {peak:12.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
