"""How close is the measured wall-time estimate to a real run on this machine?

    python bench/walltime_accuracy.py CONFIG [--max-steps N] [--no-calibrate]

Measures this machine with the probe (`ftwizard.hardware.walltime.calibrate`, unless
--no-calibrate reuses the cached measurement), prints the prediction for the run (and for
the cap given by --max-steps, the pilot), then runs the real `ftwizard train` and prints
predicted vs actual seconds, the error, and the load average around each part (a shared
machine's speed is the load's). The run goes to a temporary runs folder and index.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--no-calibrate", action="store_true")
    args = p.parse_args()

    from ftwizard.config import load_config
    from ftwizard.hardware.walltime import calibrate, load_calibration, plan_times

    cfg = load_config(args.config)
    load = lambda: os.getloadavg()[0]  # noqa: E731
    t = time.time()
    cal = load_calibration(cfg) if args.no_calibrate else None
    if cal is None:
        cal = calibrate(cfg)
        print(f"probe: {time.time() - t:.0f} s wall; {cal.s_per_microbatch:.2f} s per micro-batch, start-up "
              f"{cal.startup_s:.0f} s, load {cal.load_avg}")
    times = plan_times(cfg, pilot_steps=args.max_steps)
    wt = times["pilot"] if args.max_steps else times["full"]
    print(f"predicted: {wt.seconds:.0f} s ({wt.text}); {wt.steps} steps, eval {wt.eval_s:.0f} s, "
          f"start-up {wt.startup_s:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "ftwizard", "train", str(Path(args.config).resolve()), "--runs-dir", tmp,
               "--name", "timed"] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
        load0, t0 = load(), time.time()
        env = dict(os.environ, FTWIZARD_STATE_DIR=tmp, FTWIZARD_WALLTIME_CACHE=str(Path(tmp) / "learned.json"))
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        actual, load1 = time.time() - t0, load()
        if r.returncode != 0:
            print(r.stderr[-2000:])
            return 1
        parts = _parts(Path(tmp) / "timed", t0)
    print(f"actual parts: start-up {parts['startup']:.0f} s (launch to the first step, pre-flight included), "
          f"train {parts['train']:.0f} s, eval {parts['eval']:.0f} s, after {parts['after']:.0f} s")
    print(f"predicted parts: start-up {wt.startup_s:.0f} s, train {wt.train_s:.0f} s, eval {wt.eval_s:.0f} s")
    err = (wt.seconds - actual) / actual
    print("| predicted s | actual s | error | load at probe | load at run start / end |")
    print("|---|---|---|---|---|")
    print(f"| {wt.seconds:.0f} | {actual:.0f} | {err:+.1%} | {cal.load_avg} | {load0:.1f} / {load1:.1f} |")
    return 0


def _parts(run_path: Path, t0: float) -> dict:
    """Where a real run's time went, from its events: start-up, training steps, evaluations, the end."""
    from ftwizard.rundir import RunDir, latest_by_step

    run = RunDir(run_path)
    events = list(run.iter_events())
    train = latest_by_step(events, "train")
    by_step = {e["step"]: e for e in train}
    evals = [e["time"] - by_step[e["step"]]["time"] for e in events if e.get("kind") == "eval" and e.get("step") in by_step]
    begin = next(e for e in events if e.get("event") == "train_begin")
    step_s = (train[-1]["elapsed_s"] - train[0]["elapsed_s"] - sum(evals[:-1])) / max(1, len(train) - 1)
    startup = begin["time"] - t0 + train[0]["elapsed_s"] - step_s
    end = run.read_status().get("ended_at") or train[-1]["time"]
    train_s = step_s * len(train)
    return {"startup": startup, "train": train_s, "eval": sum(evals),
            "after": end - (begin["time"] + train[-1]["elapsed_s"]) - (evals[-1] if evals else 0)}


if __name__ == "__main__":
    sys.exit(main())
