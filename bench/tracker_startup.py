"""What each experiment tracker costs the trainer: import, start, 100 logged steps, finish.

Each tracker runs in a fresh interpreter, offline, into a temporary folder, with the same
environment ftwizard gives the trainer (ftwizard.tracking.tracker_env) and the same calls
transformers' callbacks make. Prints a table; `--json` for the raw numbers.
Run: python bench/tracker_startup.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CODE = {
    "tensorboard": """
from torch.utils.tensorboard import SummaryWriter
t1 = time.perf_counter(); w = SummaryWriter(log_dir=os.environ["TENSORBOARD_LOGGING_DIR"]); t2 = time.perf_counter()
for s in range(1, 101):
    w.add_scalar("train/loss", 1.0 / s, s); w.flush()
t3 = time.perf_counter(); w.close()
""",
    "wandb": """
import wandb
t1 = time.perf_counter(); run = wandb.init(project="bench", name="bench"); t2 = time.perf_counter()
for s in range(1, 101):
    run.log({"train/loss": 1.0 / s, "train/global_step": s})
t3 = time.perf_counter(); run.finish()
""",
    "mlflow": """
import mlflow
t1 = time.perf_counter(); mlflow.set_experiment("bench"); mlflow.start_run(run_name="bench"); t2 = time.perf_counter()
for s in range(1, 101):
    mlflow.log_metrics({"loss": 1.0 / s}, step=s, synchronous=False)
t3 = time.perf_counter(); mlflow.end_run()
""",
    "trackio": """
import trackio
t1 = time.perf_counter(); trackio.init(project="bench", name="bench"); t2 = time.perf_counter()
for s in range(1, 101):
    trackio.log({"train/loss": 1.0 / s, "train/global_step": s})
t3 = time.perf_counter(); trackio.finish()
""",
}


def one(name: str) -> dict:
    from ftwizard import tracking
    from ftwizard.config import config_from_dict

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict({"data": {"train": "t.jsonl"}, "training": {"report_to": [name]}})
        env = dict(os.environ)
        tracking.apply_env(tracking.tracker_env(cfg, tmp), env)
        os.makedirs(tracking.tracker_dir(tmp, name), exist_ok=True)
        prog = ("import os, time, json; t0 = time.perf_counter()\n" + CODE[name] +
                "t4 = time.perf_counter()\n"
                "print(json.dumps({'import_s': t1 - t0, 'start_s': t2 - t1, 'log100_s': t3 - t2, 'finish_s': t4 - t3}))")
        import resource

        t = time.perf_counter()
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, timeout=300)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - t
        cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        if r.returncode != 0:
            return {"tracker": name, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
        out = json.loads(r.stdout.strip().splitlines()[-1])
        return {"tracker": name, **{k: round(v, 3) for k, v in out.items()}, "process_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from ftwizard import tracking

    rows = [one(n) if tracking.is_installed(n) else {"tracker": n, "error": "not installed"} for n in tracking.TRACKERS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'tracker':12} {'import s':>9} {'start s':>8} {'100 logs s':>11} {'finish s':>9} {'process s':>10} "
          f"{'CPU s':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['tracker']:12} {r['error']}")
        else:
            print(f"{r['tracker']:12} {r['import_s']:9.2f} {r['start_s']:8.2f} {r['log100_s']:11.3f} "
                  f"{r['finish_s']:9.2f} {r['process_s']:10.2f} {r['cpu_s']:6.2f}")
    print(f"(load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
