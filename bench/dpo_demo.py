"""DPO demo: train a LoRA with DPO on the sample preference set through the real CLI, then evaluate base vs tuned
on the held-out pairs, and print preference accuracy, reward margin and the house-style rate with the time taken.

    python bench/dpo_demo.py [--epochs 2] [--max-length 128] [--generate] [--keep DIR]

The data (sample_data/make_preference_data.py): a bike shop help desk whose chosen answers end with the shop's
sign-off, the rejected ones with a generic one; the held-out topics never occur in training. Runs
`ftwizard train sample_data/dpo.yaml` and `ftwizard eval RUN --json`, exactly what a user types.
docs/benchmarks.md ("DPO") has measured numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "sample_data" / "dpo.yaml"))
    ap.add_argument("--epochs", type=float, default=None, help="override training.epochs")
    ap.add_argument("--max-length", type=int, default=None, help="override data.max_length")
    ap.add_argument("--generate", action="store_true", help="also generate answers: sign-off rate, ROUGE-L (slower)")
    ap.add_argument("--probe", action="store_true", help="with --generate, also the regression probe (slower)")
    ap.add_argument("--keep", default=None, help="runs folder to keep (default: a temporary one)")
    a = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(a.keep or tmp)
        runs.mkdir(parents=True, exist_ok=True)
        name = f"dpo-demo-{int(time.time())}"
        train = [sys.executable, "-m", "ftwizard", "train", a.config, "--runs-dir", str(runs), "--name", name]
        if a.epochs is not None:
            train += ["--set", f"training.epochs={a.epochs}"]
        if a.max_length is not None:
            train += ["--set", f"data.max_length={a.max_length}"]
        if a.generate:
            train += ["--set", "evaluation.preference_generation=true"]
        print(f"training: {' '.join(train[2:])}", flush=True)
        train_s = run(train, runs / "train.log")
        status = json.loads((runs / name / "status.json").read_text())
        events = [json.loads(x) for x in (runs / name / "events.jsonl").read_text().splitlines() if x.strip()]
        steps = [e for e in events if e.get("kind") == "train" and "loss" in e]
        ev = [sys.executable, "-m", "ftwizard", "eval", name, "--runs-dir", str(runs), "--json"]
        if not a.probe:
            ev.append("--no-probe")
        print(f"evaluating: {' '.join(ev[2:])}", flush=True)
        t0 = time.perf_counter()
        out = subprocess.run(ev, cwd=REPO, capture_output=True, text=True)
        eval_s = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"eval failed ({out.returncode}): {out.stdout[-2000:]}{out.stderr[-2000:]}")
        s = json.loads(out.stdout)
    load1 = os.getloadavg()

    cols = [("pref_accuracy", "pref acc", "{:.0%}"), ("pref_accuracy_norm", "acc/token", "{:.0%}"),
            ("reward_margin", "margin", "{:+.3f}")]
    if a.generate:
        cols += [("custom:signoff", "sign-off", "{:.0%}"), ("rouge_l", "ROUGE-L", "{:.2f}")]
    print()
    print(f"held-out pairs: {s['preference']['pairs']}  beta {s['preference']['beta']}  "
          f"(margin: beta x log-prob gain of chosen over rejected, against the base)")
    print(f"{'model':8}" + "".join(f"{h:>11}" for _, h, _ in cols))
    for m in s["models"]:
        vals = m["metrics"]
        print(f"{m['label']:8}" + "".join(f"{(f.format(vals[c]) if vals.get(c) is not None else '-'):>11}"
                                         for c, _, f in cols))
    v = s.get("verdict") or {}
    if v:
        print(f"verdict: {v.get('text')}")
    first, last = (steps[0], steps[-1]) if steps else ({}, {})
    print(f"training: {len(steps)} logged steps to step {status.get('step')}, loss {first.get('loss', float('nan')):.3f} "
          f"-> {last.get('loss', float('nan')):.3f}, train reward margin {first.get('rewards_margins', float('nan')):+.3f}"
          f" -> {last.get('rewards_margins', float('nan')):+.3f}")
    print(f"time: train {train_s:.0f} s (CLI, model load and pre-flight included), eval {eval_s:.0f} s; "
          f"total {train_s + eval_s:.0f} s")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads default; load average "
          f"{load0[0]:.1f} at start, {load1[0]:.1f} at end")


if __name__ == "__main__":
    main()
