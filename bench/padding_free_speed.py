"""Tokens/s of padded against padding-free batches on the sample data (CPU or GPU).

Same model, loader, data and collator as the trainer (LoRA on the embedded model unless
--base), one forward+backward+AdamW step per micro-batch; the two ways alternate in rounds
so load drifts hit both. Tokens counted are the real (non-padding) ones, so the figure is
useful work per second. CPU seconds are load-proof; wall seconds are printed too.

    python bench/padding_free_speed.py [--batch 2 8] [--steps 6] [--rounds 2] [--base DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--base", default=None)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ftwizard.config import default_config
    from ftwizard.models.embedded import ensure_cached
    from ftwizard.training import trainer as T
    from ftwizard.training.dataset import encode_file, truncate_rows

    base = a.base or str(ensure_cached(log=lambda *_: None))
    cfg = default_config(REPO / "sample_data" / "train.jsonl")
    cfg.data.max_length = a.max_length
    cuda = torch.cuda.is_available()
    prec = T.Precision("cuda", True, False) if cuda else T.Precision("cpu", False, False)
    model, tok = T.load_model_and_tokenizer(cfg, base, prec)
    model.train()
    rows, _ = truncate_rows(encode_file(cfg.data.train, tok), a.max_length)
    examples = [{"input_ids": r["input_ids"],
                 "labels": [t if m else -100 for t, m in zip(r["input_ids"], r["assistant_masks"])]} for r in rows]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    dev = next(model.parameters()).device
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else None
    results = {}
    for b in a.batch:
        for rnd in range(a.rounds):
            for free in (False, True):
                coll = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=free)
                start = (rnd * a.steps * b) % max(1, len(examples) - a.steps * b)
                batches = [coll(examples[start + i * b: start + (i + 1) * b]) for i in range(a.steps)]
                real = sum(len(e["input_ids"]) for e in examples[start: start + a.steps * b])
                computed = sum(x["input_ids"].numel() for x in batches)
                if cuda:
                    torch.cuda.synchronize()
                c0, w0 = time.process_time(), time.perf_counter()
                for x in batches:
                    kw = {k: v.to(dev) for k, v in x.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
                    with amp or contextlib.nullcontext():
                        loss = model(**kw, use_cache=False).loss
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                if cuda:
                    torch.cuda.synchronize()
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                r = results.setdefault((b, free), {"real": 0, "computed": 0, "cpu": 0.0, "wall": 0.0})
                r["real"] += real
                r["computed"] += computed
                r["cpu"] += cpu
                r["wall"] += wall
    load = os.getloadavg()[0]
    print(f"device {'cuda' if cuda else 'cpu'}, threads {torch.get_num_threads()}, load {load:.1f}, "
          f"max_length {a.max_length}, {a.steps} steps x {a.rounds} rounds")
    print("| micro-batch | batches | real tok/s (CPU s) | real tok/s (wall) | padding computed | speed-up (CPU) |")
    print("| --- | --- | --- | --- | --- | --- |")
    out = []
    for b in a.batch:
        base_r = results[(b, False)]
        for free in (False, True):
            r = results[(b, free)]
            row = {"micro_batch": b, "padding_free": free, "real_tokens": r["real"], "computed_tokens": r["computed"],
                   "tok_s_cpu": r["real"] / r["cpu"], "tok_s_wall": r["real"] / r["wall"],
                   "padding_pct": 100 * (1 - r["real"] / r["computed"]) if r["computed"] else 0.0,
                   "speedup_cpu": (r["real"] / r["cpu"]) / (base_r["real"] / base_r["cpu"])}
            out.append(row)
            print(f"| {b} | {'padding-free' if free else 'padded'} | {row['tok_s_cpu']:.0f} | {row['tok_s_wall']:.0f} | "
                  f"{row['padding_pct']:.1f} % | {row['speedup_cpu']:.2f}x |")
    if a.json:
        Path(a.json).write_text(json.dumps({"load": load, "rows": out}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
