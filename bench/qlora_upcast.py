"""QLoRA with and without peft's fp32 upcast (prepare_model_for_kbit_training): loss curve,
weight bytes and peak memory, on the CPU in bf16 (the GPU's compute dtype).

Each way runs in its own process (clean peak RSS) through the trainer's own loader
(`load_model_and_tokenizer(..., upcast_kbit=...)`), then a plain bf16-autocast AdamW loop
on the sample data with the adapters in bf16, as TRL casts them for a quantised base.

    python bench/qlora_upcast.py [--steps 20] [--batch 2] [--max-length 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def one(upcast: bool, steps: int, batch: int, max_length: int) -> dict:
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ftwizard.config import default_config
    from ftwizard.models.embedded import ensure_cached
    from ftwizard.training import trainer as T
    from ftwizard.training.dataset import encode_file, truncate_rows

    torch.manual_seed(0)
    base = str(ensure_cached(log=lambda *_: None))
    cfg = default_config(REPO / "sample_data" / "train.jsonl")
    cfg.model.method = "qlora"
    cfg.data.max_length = max_length
    prec = T.Precision("cpu", True, False)  # bf16 compute, as on a GPU
    model, tok = T.load_model_and_tokenizer(cfg, base, prec, upcast_kbit=upcast)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(torch.bfloat16)  # what TRL does for a quantised base
    by_dtype: dict[str, int] = {}
    for p in model.parameters():
        by_dtype[str(p.dtype).replace("torch.", "")] = by_dtype.get(str(p.dtype).replace("torch.", ""), 0) + p.numel() * p.element_size()
    rows, _ = truncate_rows(encode_file(cfg.data.train, tok), max_length)
    coll = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)
    ex = [{"input_ids": r["input_ids"], "labels": [t if m else -100 for t, m in zip(r["input_ids"], r["assistant_masks"])]}
          for r in rows]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    losses = []
    t0 = time.process_time()
    for s in range(steps):
        b = coll(ex[s * batch:(s + 1) * batch])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(float(loss), 4))
    return {"upcast": upcast, "losses": losses, "param_bytes_by_dtype": by_dtype,
            "cpu_s_per_step": round((time.process_time() - t0) / steps, 2),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--json")
    ap.add_argument("--one", choices=["upcast", "no-upcast"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one == "upcast", a.steps, a.batch, a.max_length)))
        return 0
    res = []
    for way in ("upcast", "no-upcast"):
        r = subprocess.run([sys.executable, __file__, "--one", way, "--steps", str(a.steps), "--batch", str(a.batch),
                            "--max-length", str(a.max_length)], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            return 1
        res.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"QLoRA on the embedded model, CPU bf16 autocast, batch {a.batch}, max_length {a.max_length}, {a.steps} steps")
    print("| way | weights fp32 MB | weights bf16 MB | peak RSS MB | CPU s/step | first loss | last-5 mean loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in res:
        d = r["param_bytes_by_dtype"]
        tail = r["losses"][-5:]
        print(f"| {'peft upcast (before)' if r['upcast'] else 'no upcast (now)'} | {d.get('float32', 0) / 1e6:.1f} | "
              f"{d.get('bfloat16', 0) / 1e6:.1f} | {r['peak_rss_bytes'] / 1e6:.0f} | {r['cpu_s_per_step']} | "
              f"{r['losses'][0]} | {sum(tail) / len(tail):.4f} |")
    print("losses (upcast):   ", res[0]["losses"])
    print("losses (no upcast):", res[1]["losses"])
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
