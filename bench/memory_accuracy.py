"""How right is the memory estimate? Estimate vs measured peak on a real GPU.

For the embedded model's shape and randomly initialised 1B/3B/8B Llama shapes (built
with `AutoModelForCausalLM.from_config` from ftwizard's shapes table: nothing is
downloaded), across full fine-tuning, LoRA and QLoRA, two sequence lengths and
gradient checkpointing off/on, this runs a few real training steps set up the way
ftwizard's trainer sets them up (full: fp32 weights + bf16 autocast + torch AdamW;
LoRA: bf16 base, fp32 adapters, r=16 all-linear, dropout 0.05; QLoRA: NF4 + double
quantisation via bitsandbytes Linear4bit, peft's prepare_model_for_kbit_training, bf16
adapters as TRL casts them) and prints the estimate against
`torch.cuda.max_memory_reserved()` with the error in %. The CUDA context lives outside
PyTorch's allocator, so the estimate is compared without its context part (and the
NVML-reported process memory, which includes it, is printed beside).

Rows the estimator says do not fit are run too: they must end in an out-of-memory
error. Only transformers, peft and bitsandbytes are used (a plain training loop).

    python bench/memory_accuracy.py --out results.json          # on a GPU, < 8 min on an H100
    python bench/memory_accuracy.py --dry-run                     # anywhere: estimates only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftwizard.hardware.catalog import lookup  # noqa: E402
from ftwizard.hardware.memory import MemorySettings, training_memory  # noqa: E402
from ftwizard.hardware.shapes import EMBEDDED_SHAPE, find_builtin  # noqa: E402

GIB = 1024**3
MODELS = {"embedded": EMBEDDED_SHAPE, "1b": find_builtin("llama-3.2-1b"), "3b": find_builtin("llama-3.2-3b"),
          "8b": find_builtin("llama-3.1-8b")}
# a tiny shape for exercising this script's GPU code path on a CPU (--device cpu)
MODELS["tiny"] = EMBEDDED_SHAPE.__class__(name="tiny", model_type="llama", hidden=64, layers=2, heads=4, kv_heads=2,
                                          head_dim=16, intermediate=176, vocab=1000, tied=True)
DEVICE = "cuda"
METHODS = ("qlora", "lora", "full")
SEQS = (512, 2048)
STEPS = 3


def plan(models, methods, seqs, batch: int) -> list[dict]:
    rows = []
    for m in models:
        for method in methods:
            for seq in seqs:
                for ckpt in (True, False):
                    rows.append(dict(model=m, method=method, seq=seq, batch=batch, ckpt=ckpt, padded=False))
    # two padded batches (attention mask present: repeated K/V and the mask bias in SDPA)
    for m in [x for x in ("embedded", "1b", "tiny") if x in models]:
        if "lora" in methods:
            rows.append(dict(model=m, method="lora", seq=1024, batch=2, ckpt=False, padded=True))
    return rows


def settings(row: dict) -> MemorySettings:
    return MemorySettings(method=row["method"], seq_len=row["seq"], micro_batch=row["batch"],
                          gradient_checkpointing=row["ckpt"], optimizer="adamw", precision="bf16", lora_r=16,
                          lora_targets="all-linear", lora_dropout=0.05, padded=row["padded"], device="cuda",
                          kbit_fp32_rest=True, fused_lm_head=False)  # this loop: peft's upcast, full logits


def estimate_row(row: dict, gpu_bytes: int) -> dict:
    est = training_memory(MODELS[row["model"]], settings(row))
    total = est.total_bytes
    verdict = "fits" if total <= 0.9 * gpu_bytes else "tight" if total <= gpu_bytes else "does_not_fit"
    return {"estimate_bytes": total, "estimate_reserved_bytes": total - est.parts["cuda_context"],
            "estimate_parts": est.parts, "peak_phase": est.peak_phase, "verdict": verdict}


# ---- GPU side --------------------------------------------------------------------
def hf_config(shape):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
                       intermediate_size=shape.intermediate, vocab_size=shape.vocab,
                       tie_word_embeddings=shape.tied, max_position_embeddings=8192, use_cache=False,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2)


def quantize_linears(model):
    """Swap every decoder Linear for a bitsandbytes NF4 Linear4bit (double quantisation,
    bf16 compute and storage), as BitsAndBytesConfig would load it."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      quant_storage=torch.bfloat16, device="meta")
                w = lin.weight.data
                # quantised on the GPU where the bf16 weight already is (Params4bit.to quantises)
                q.weight = bnb.nn.Params4bit(w, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4", quant_storage=torch.bfloat16).to(DEVICE)
                if lin.bias is not None:
                    q.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
                setattr(parent, name, q)
                del lin, w
    model.is_loaded_in_4bit = True
    return model


def build(model_key: str, method: str):
    import torch
    from transformers import AutoModelForCausalLM

    cfg = hf_config(MODELS[model_key])
    dtype = torch.float32 if method == "full" else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    if method == "qlora":
        quantize_linears(model)
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if method == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
        if method == "qlora":  # TRL casts trainable params of quantised models to bf16
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
    model.train()
    return model


def run_row(model, row: dict) -> dict:
    import torch

    if row["ckpt"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    else:
        model.gradient_checkpointing_disable()
        if hasattr(model, "disable_input_require_grads"):
            model.disable_input_require_grads()
    b, s = row["batch"], row["seq"]
    vocab = MODELS[row["model"]].vocab
    g = torch.Generator(device=DEVICE).manual_seed(1)
    ids = torch.randint(3, vocab, (b, s), device=DEVICE, generator=g)
    att = torch.ones_like(ids)
    if row["padded"]:
        att[1:, s // 2:] = 0  # later rows half padding: the collator's mask is present
    labels = ids.masked_fill(att == 0, -100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    cuda = DEVICE == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    losses = []
    try:
        for _ in range(STEPS):
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        if cuda:
            torch.cuda.synchronize()
        out = {"oom": False, "losses": losses}
    except torch.cuda.OutOfMemoryError:
        out = {"oom": True}
    out["seconds"] = round(time.time() - t0, 2)
    if cuda:
        out["measured_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        out["measured_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        out["nvml_process_bytes"] = nvml_process_bytes()
    model.zero_grad(set_to_none=True)
    del opt
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def nvml_process_bytes():
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0))
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if p.pid == os.getpid():
                return int(p.usedGpuMemory or 0)
    except Exception:
        return None
    return None


def fmt(n) -> str:
    return "-" if n is None else f"{n / GIB:6.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write all rows as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="estimates only; no torch, no GPU")
    ap.add_argument("--models", default="embedded,1b,3b,8b")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seqs", default=",".join(map(str, SEQS)))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--gpu", default=None, help="GPU to judge fit against in --dry-run (default H100)")
    ap.add_argument("--time-budget", type=float, default=450, help="stop starting new groups after this many seconds")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu only exercises the code path (model 'tiny'); nothing is measured there")
    a = ap.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    methods = [m for m in a.methods.split(",") if m]
    rows = plan(models, methods, [int(x) for x in a.seqs.split(",")], a.batch)

    global DEVICE
    DEVICE = a.device
    gpu_name, gpu_bytes = (a.gpu or "H100"), lookup(a.gpu or "H100").memory_bytes
    if not a.dry_run and DEVICE == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA GPU: run with --dry-run for estimates only", file=sys.stderr)
            return 2
        gpu_name = torch.cuda.get_device_name(0)
        gpu_bytes = torch.cuda.get_device_properties(0).total_memory
    print(f"GPU: {gpu_name} ({gpu_bytes / GIB:.1f} GiB); {STEPS} steps per row; estimate compared without CUDA context")
    head = f"{'model':8} {'method':6} {'seq':>5} {'b':>2} {'ckpt':4} {'pad':3} {'est GiB':>7} {'meas GiB':>8} {'err %':>6} {'nvml':>6} verdict / result"
    print(head)
    results = []
    start = time.time()
    current = (None, None)
    model = None
    for row in rows:
        r = {**row, **estimate_row(row, gpu_bytes), "gpu": gpu_name}
        if not a.dry_run:
            if time.time() - start > a.time_budget and (row["model"], row["method"]) != current:
                r["skipped"] = "time budget"
            else:
                import torch

                if (row["model"], row["method"]) != current:
                    model = None
                    gc.collect()
                    if DEVICE == "cuda":
                        torch.cuda.empty_cache()
                    try:
                        model = build(row["model"], row["method"])
                        current = (row["model"], row["method"])
                    except torch.cuda.OutOfMemoryError:
                        model, current = None, (None, None)
                        r.update(oom=True, measured_reserved_bytes=None, note="out of memory while building")
                if model is not None:
                    r.update(run_row(model, row))
                if r.get("measured_reserved_bytes") and not r.get("oom"):
                    r["error_pct"] = round(100 * (r["estimate_reserved_bytes"] - r["measured_reserved_bytes"])
                                           / r["measured_reserved_bytes"], 1)
                r["prediction_ok"] = (r["verdict"] == "does_not_fit") == bool(r.get("oom"))
        results.append(r)
        result = ("OOM" if r.get("oom") else "ran " + " ".join(f"{x:.2f}" for x in r.get("losses", []))) if not a.dry_run else ""
        if r.get("skipped"):
            result = "skipped (time budget)"
        err = f"{r['error_pct']:+6.1f}" if "error_pct" in r else "     -"
        print(f"{row['model']:8} {row['method']:6} {row['seq']:>5} {row['batch']:>2} {'on' if row['ckpt'] else 'off':4} "
              f"{'yes' if row['padded'] else 'no':3} {fmt(r['estimate_reserved_bytes'])}  {fmt(r.get('measured_reserved_bytes'))}"
              f"   {err} {fmt(r.get('nvml_process_bytes'))} {r['verdict']} {result}", flush=True)
    measured = [r for r in results if "error_pct" in r]
    if measured:
        errs = [abs(r["error_pct"]) for r in measured]
        print(f"\n{len(measured)} rows measured: mean |error| {sum(errs) / len(errs):.1f} %, max {max(errs):.1f} %, "
              f"within 10 %: {sum(e <= 10 for e in errs)}/{len(errs)}")
        bad = [r for r in results if r.get("prediction_ok") is False]
        print(f"fit predictions wrong: {len(bad)}")
    if a.out:
        Path(a.out).write_text(json.dumps({"gpu": gpu_name, "gpu_bytes": gpu_bytes, "steps": STEPS, "rows": results},
                                          indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
