"""Overhead of `ftwizard train` against a plain TRL script: same model, data, settings.

    python bench/train_overhead.py [--steps 20] [--rounds 2] [--method lora]

Both sides train the embedded model on sample_data/train.jsonl for the same number of
steps, in alternating rounds (A B A B) so that machine noise hits both; tokens/s is
non-padding tokens seen (TRL's num_tokens) over the Trainer's train_runtime, which
excludes imports and model loading on both sides. Target: our overhead at most 3 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

PLAIN = textwrap.dedent('''
    import json, sys
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class LastTokens(TrainerCallback):  # TRL clears its metrics after each log; keep the last count
        tokens = None
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                LastTokens.tokens = logs["num_tokens"]
    from ftwizard.models.embedded import ensure_cached
    steps, batch, max_len, method = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    set_seed(42)
    path = str(ensure_cached())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    rows = [json.loads(l) for l in open(sys.argv[5])]
    args = SFTConfig(output_dir=sys.argv[6], max_length=max_len, max_steps=steps, per_device_train_batch_size=batch,
                     gradient_accumulation_steps=1, learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.05,
                     logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True,
                     disable_tqdm=True, seed=42)
    tr = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                    callbacks=[LastTokens()])
    out = tr.train()
    tokens = LastTokens.tokens
    print("RESULT", json.dumps({"runtime": out.metrics["train_runtime"], "tokens": tokens}))
''')


def run_ours(tmp: Path, steps: int, batch: int, max_len: int, method: str, i: int) -> dict:
    cfg = {"name": f"ours-{i}", "runs_dir": str(tmp / "runs"), "model": {"base": "embedded", "method": method},
           "data": {"train": str(REPO / "sample_data" / "train.jsonl"), "max_length": max_len},
           "training": {"max_steps": steps, "batch_size": batch, "gradient_accumulation": 1, "save_every": 0,
                        "eval_every": 0, "seed": 42}}
    path = tmp / f"ours-{i}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-m", "ftwizard", "train", str(path)], check=True, stdout=subprocess.DEVNULL)
    events = [json.loads(l) for l in (tmp / "runs" / f"ours-{i}" / "events.jsonl").read_text().splitlines()]
    end = [e for e in events if e.get("event") == "train_end"][-1]
    tokens = [e["tokens"] for e in events if e.get("kind") == "train" and e.get("tokens")][-1]
    return {"runtime": end["train_runtime"], "tokens": tokens}


def run_plain(tmp: Path, steps: int, batch: int, max_len: int, method: str, i: int) -> dict:
    script = tmp / "plain.py"
    script.write_text(PLAIN)
    out = subprocess.run([sys.executable, str(script), str(steps), str(batch), str(max_len), method,
                          str(REPO / "sample_data" / "train.jsonl"), str(tmp / f"plain-{i}")],
                         check=True, capture_output=True, text=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--method", choices=["lora", "full"], default="lora")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i in range(a.rounds):
            for name, fn, acc in (("plain TRL", run_plain, plain), ("ftwizard", run_ours, ours)):
                r = fn(tmp, a.steps, a.batch, a.max_length, a.method, i)
                r["tps"] = r["tokens"] / r["runtime"]
                acc.append(r)
                print(f"round {i + 1}: {name:10} {r['tokens']:>7} tokens in {r['runtime']:7.2f} s = {r['tps']:8.1f} tok/s",
                      flush=True)
    mo, mp = statistics.median(r["tps"] for r in ours), statistics.median(r["tps"] for r in plain)
    print()
    print(f"{'':22} {'tokens/s (median)':>18}")
    print(f"{'plain TRL script':22} {mp:18.1f}")
    print(f"{'ftwizard train':22} {mo:18.1f}")
    print(f"overhead: {(mp - mo) / mp * 100:+.2f} %  (target: at most 3 %)")


if __name__ == "__main__":
    main()
