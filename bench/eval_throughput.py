"""Eval generation throughput: batched (left padding) against one prompt at a time.

    python bench/eval_throughput.py [--samples 16] [--batch 8] [--run RUN_DIR] [--rounds 2]

Both sides use the same loaded model (the embedded base, or a run's final adapter with
--run), the same held-out prompts (sample_data/eval.jsonl) and the same greedy settings,
in alternating rounds (A B A B) so that machine noise hits both. Prints samples/s for
each and the speed-up, the load average and torch's thread count, as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the first torch import


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--run", help="a run folder: use its final adapter (default: the base model)")
    ap.add_argument("--eval-file", default=str(REPO / "sample_data" / "eval.jsonl"))
    args = ap.parse_args()

    import torch

    from ftwizard.evaluation.generate import Engine
    from ftwizard.evaluation.runner import max_new_tokens_for
    from ftwizard.evaluation.samples import load_samples
    from ftwizard.models.embedded import ensure_cached

    engine = Engine(str(ensure_cached(log=lambda *_: None)), "lora", log=lambda *_: None)
    if args.run:
        engine.use("adapter", str(Path(args.run) / "adapter"), "final")
    else:
        engine.use("base", None, "base")
    samples = load_samples(Path(args.eval_file), max_samples=args.samples)
    prompts = [s.prompt for s in samples]
    max_new = max_new_tokens_for(engine, [s.reference for s in samples])
    engine.generate(prompts[:2], 4, 2)  # warm-up: first-call allocations are not throughput

    timings: dict[str, list[float]] = {"batched": [], "one_at_a_time": []}
    outputs: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, bs in (("batched", args.batch), ("one_at_a_time", 1)):
            t0 = time.perf_counter()
            outputs[name] = engine.generate(prompts, max_new, bs)
            timings[name].append(time.perf_counter() - t0)
    rate = {k: len(prompts) / statistics.median(v) for k, v in timings.items()}
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["one_at_a_time"])) / len(prompts)
    result = {
        "model": "final adapter of " + args.run if args.run else "embedded base",
        "samples": len(prompts), "batch": args.batch, "max_new_tokens": max_new, "rounds": args.rounds,
        "batched_samples_per_s": round(rate["batched"], 3),
        "one_at_a_time_samples_per_s": round(rate["one_at_a_time"], 3),
        "speedup": round(rate["batched"] / rate["one_at_a_time"], 2),
        "identical_outputs": round(same, 3),
        "device": engine.device, "precision": engine.precision, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "seconds": {k: [round(x, 2) for x in v] for k, v in timings.items()},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
