"""The GSM8K-style case of issue 18, end to end: data, a short CPU pilot, `ftwizard eval`, a table.

    python bench/gsm_eval_case.py OUT_DIR [--steps 30] [--max-samples 80]

Writes 320 + 80 grade-school maths rows (bench/math_data.py, deterministic, no downloads),
a config (embedded model, LoRA r=16, 8 rows a step, lr 4e-4, max_length 256), trains a
pilot of `--steps` steps, evaluates base, base 3-shot and the final model on the held-out
rows, and prints the summary as a markdown table with the verdict: the numbers
docs/benchmarks.md records. Each command is the one a person would type; nothing is mocked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from math_data import write  # noqa: E402

CONFIG = """name: gsm
runs_dir: runs
model: {{base: embedded, method: lora}}
data: {{train: math_train.jsonl, eval: math_eval.jsonl, max_length: 256}}
lora: {{r: 16, alpha: 32, dropout: 0.05}}
training: {{learning_rate: 4.0e-4, max_steps: {steps}, batch_size: 4, gradient_accumulation: 2, warmup_ratio: 0.05,
  eval_every: 0, save_every: {save}, seed: 42, log_every: 1}}
"""


def markdown(summary: dict) -> str:
    from ftwizard.evaluation.report import fmt_value

    cols = [m["name"] for m in summary["metrics"] + summary.get("behaviour", [])]
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for m in summary["models"]:
        cells = [fmt_value(c, m["metrics"].get(c)) + ("*" if summary["best"].get(c) == m["id"] else "")
                 for c in cols]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    v = summary.get("verdict") or {}
    return "\n".join(lines) + (f"\n\nverdict: {v.get('text')}" if v else "") + "".join(
        f"\nwarning: {w}" for w in summary.get("warnings", []) if w != v.get("text"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-samples", type=int, default=80)
    a = ap.parse_args()
    out = Path(a.out_dir).resolve()
    write(out)
    (out / "gsm.yaml").write_text(CONFIG.format(steps=a.steps, save=max(1, a.steps // 2)))
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cli = [sys.executable, "-m", "ftwizard"]
    t0 = time.time()
    subprocess.run(cli + ["train", "gsm.yaml", "--force"], cwd=out, env=env, check=True)
    t1 = time.time()
    res = subprocess.run(cli + ["eval", "gsm", "--runs-dir", "runs", "--checkpoints", "final", "--max-samples",
                                str(a.max_samples), "--json"], cwd=out, env=env, check=True,
                         capture_output=True, text=True)
    t2 = time.time()
    print(markdown(json.loads(res.stdout)))
    print(f"\ntrain {t1 - t0:.0f} s, eval {t2 - t1:.0f} s wall; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
