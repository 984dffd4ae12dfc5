"""Speed of the pre-flight check on the default config (budget: under 5 s).

    python bench/check_speed.py [--runs 5]

Measures, each in a fresh process (`ftwizard check CONFIG --json`):
- cold: data never seen (fresh copies of the sample files): tokenizer load, data lint of
  train and eval, estimate, rules;
- warm: the same files again (the lint comes from the on-disk cache, as when `ftwizard
  train` follows `ftwizard check`);
and in one process the wizard's case, a hyperparameter change re-checked (memory cache).
Prints median wall time, the children's CPU time (the machine may be shared: CPU time is
the steadier figure) and the load average. Record results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_check_cli(cfg: Path) -> tuple[float, float]:
    c0, t0 = child_cpu(), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ftwizard", "check", str(cfg), "--json"], capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, child_cpu() - c0
    if r.returncode not in (0, 1):
        raise SystemExit(f"check failed: {r.stderr}")
    return wall, cpu


def default_config(folder: Path) -> Path:
    from ftwizard.paths import sample_data_dir

    sample = sample_data_dir()
    for name in ("train.jsonl", "eval.jsonl"):
        shutil.copy(sample / name, folder / name)
    cfg = folder / "ftwizard.yaml"
    subprocess.run([sys.executable, "-m", "ftwizard", "init", "-o", str(cfg), "--train", str(folder / "train.jsonl"),
                    "--eval", str(folder / "eval.jsonl")], check=True, capture_output=True)
    # the same settings `ftwizard init` writes for the bundled sample
    text = cfg.read_text().replace("max_length: 512", "max_length: 256").replace("task_type: other", "task_type: extraction")
    text = text.replace("epochs: 3.0", "epochs: 1.0").replace("eval_every: 50", "eval_every: 10").replace("save_every: 50", "save_every: 10")
    cfg.write_text(text)
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            d = Path(tmp) / f"cold{i}"
            d.mkdir()
            cfg = default_config(d)
            cold.append(run_check_cli(cfg))
            warm.append(run_check_cli(cfg))
        from ftwizard.config import load_config
        from ftwizard.preflight import run_check

        cfg = load_config(cfg)
        run_check(cfg)
        keystroke = []
        for i in range(20):
            cfg.training.learning_rate = 1e-4 + i * 1e-5
            t0 = time.perf_counter()
            run_check(cfg)
            keystroke.append(time.perf_counter() - t0)

    def row(name, xs):
        walls = [w for w, _ in xs]
        cpus = [c for _, c in xs]
        print(f"{name:46} {statistics.median(walls):8.2f} {min(walls):8.2f} {max(walls):8.2f} {statistics.median(cpus):8.2f}")

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'ftwizard check (default config)':46} {'median s':>8} {'min s':>8} {'max s':>8} {'cpu s':>8}")
    row("cold: tokenizer + lint + estimate + rules", cold)
    row("warm: lint from the disk cache (check -> train)", warm)
    ks = sorted(keystroke)
    print(f"{'in process, a hyperparameter changed':46} {statistics.median(ks) * 1000:7.1f}ms {ks[0] * 1000:7.1f}ms "
          f"{ks[-1] * 1000:7.1f}ms")
    worst = statistics.median(w for w, _ in cold)
    print(f"budget 5 s: {'met' if worst < 5 else 'MISSED'} (cold median {worst:.2f} s)")


if __name__ == "__main__":
    main()
