"""Measured pre-flight: a few real training steps on the longest batches, peak memory.

Run as a subprocess (`python -m ftwizard.hardware.probe --config RUN.yaml`) so the CLI
and the wizard never import torch. The model is built exactly as the trainer builds it
(`ftwizard.training.trainer.load_model_and_tokenizer`: dtype, 4-bit config, peft), the
longest rows of the user's data are batched and padded the way the collator pads them,
and a plain loop runs forward, backward and the optimizer under the same autocast and
gradient checkpointing the trainer turns on. The peak is `torch.cuda.max_memory_reserved`
on a GPU (the CUDA context is outside it, so the estimate is compared without its
context part), or on a CPU the peak of live tensor bytes from torch.profiler (compared
with the CPU estimate, fp32, without its allocator-overhead part; the process's RSS
growth is reported beside it). Prints one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _batches(cfg, tok, micro_batch: int, steps: int, max_length: int):
    """The longest rows of the data (or max-length random ids), padded per batch."""
    import torch

    rows = []
    if cfg.data.train and os.path.isfile(cfg.data.train):
        from ftwizard.training.dataset import encode_file

        enc = encode_file(cfg.data.train, tok, fmt=cfg.data.format, system_prompt=cfg.data.system_prompt,
                          assistant_only=cfg.data.assistant_only_loss)
        rows = sorted((r["input_ids"][:max_length] for r in enc), key=len, reverse=True)
    if not rows:
        g = torch.Generator().manual_seed(0)
        rows = [torch.randint(0, len(tok), (max_length,), generator=g).tolist() for _ in range(micro_batch)]
    batch = rows[:micro_batch]
    while len(batch) < micro_batch:
        batch.append(batch[0])
    width = max(len(r) for r in batch)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    att = torch.zeros((len(batch), width), dtype=torch.long)
    for i, r in enumerate(batch):
        ids[i, : len(r)] = torch.tensor(r)
        att[i, : len(r)] = 1
    labels = ids.masked_fill(att == 0, -100)
    return [(ids, att, labels)] * steps, width, any(len(r) < width for r in batch)


def _optimizer(name: str, params, lr: float):
    import torch

    if name == "adamw_torch":
        return torch.optim.AdamW(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    import bitsandbytes as bnb

    return {
        "adamw_8bit": bnb.optim.AdamW8bit,
        "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
        "paged_adamw_32bit": bnb.optim.PagedAdamW32bit,
    }[name](params, lr=lr)


def probe(config_path: str, steps: int = 2) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from ftwizard.config import load_config
    from ftwizard.hardware.estimate import _CONFIG_OPTIMIZER
    from ftwizard.hardware.memory import MemorySettings, training_memory
    from ftwizard.hardware.shapes import resolve_shape
    from ftwizard.models.resolve import resolve_base
    from ftwizard.training.trainer import choose_precision, load_model_and_tokenizer

    cfg = load_config(config_path)
    t = cfg.training
    prec = choose_precision(cfg)
    base_path = resolve_base(cfg.model.base, log=lambda *_: None)
    cuda = prec.device == "cuda"
    rss0 = _rss()
    model, tok = load_model_and_tokenizer(cfg, base_path, prec)
    if not cuda:
        model.to("cpu")
    peft_model = hasattr(model, "get_nb_trainable_parameters")
    if cfg.model.method == "qlora" and prec.bf16:  # what TRL does for quantised bases
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if peft_model:
            model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    batches, width, padded = _batches(cfg, tok, t.batch_size, steps * max(1, min(2, t.gradient_accumulation)),
                                      cfg.data.max_length)
    opt = _optimizer(t.optimizer, [p for p in model.parameters() if p.requires_grad], t.learning_rate)
    dev = next(p for p in model.parameters()).device
    amp = torch.autocast(dev.type, dtype=prec.compute_dtype) if (prec.bf16 or prec.fp16) else None
    accum = max(1, min(2, t.gradient_accumulation))
    losses = []

    def run_steps():
        for k, (ids, att, labels) in enumerate(batches):
            ids, att, labels = ids.to(dev), att.to(dev), labels.to(dev)
            if amp is not None:
                with amp:
                    loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
            else:
                loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
            (loss / accum).backward()
            losses.append(float(loss.detach()))
            if (k + 1) % accum == 0:
                opt.step()
                opt.zero_grad(set_to_none=True)

    t0 = time.time()
    if cuda:
        torch.cuda.synchronize()
        run_steps()
        torch.cuda.synchronize()
        cpu_peak = None
    else:
        from ftwizard.hardware.measure import cpu_peak_tensor_bytes, live_tensor_bytes

        cpu_peak = cpu_peak_tensor_bytes(run_steps, live_tensor_bytes(model))
    elapsed = time.time() - t0

    shape = resolve_shape(base_path)
    settings = MemorySettings(
        method=cfg.model.method, seq_len=width, micro_batch=t.batch_size, grad_accum=t.gradient_accumulation,
        gradient_checkpointing=t.gradient_checkpointing,
        optimizer=_CONFIG_OPTIMIZER[t.optimizer],
        precision=prec.name, lora_r=cfg.lora.r,
        lora_targets=cfg.lora.target_modules if isinstance(cfg.lora.target_modules, str) else tuple(cfg.lora.target_modules),
        lora_dropout=cfg.lora.dropout, padded=padded, device="cuda" if cuda else "cpu",
        fused_lm_head=False,  # this loop calls model(labels=...): full logits, unlike TRL's chunked head
    )
    est = training_memory(shape, settings)
    out = {
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "steps": len(batches) // accum,
        "seq_len": width,
        "micro_batch": t.batch_size,
        "losses": losses,
        "seconds": round(elapsed, 3),
        "estimate_bytes": est.total_bytes,
        "estimate_parts": est.parts,
    }
    if cuda:
        out["metric"] = "torch.cuda.max_memory_reserved (CUDA context not included)"
        out["measured_bytes"] = int(torch.cuda.max_memory_reserved(dev))
        out["estimate_compared_bytes"] = est.total_bytes - est.parts["cuda_context"]
        out["max_memory_allocated"] = int(torch.cuda.max_memory_allocated(dev))
    else:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        out["metric"] = "CPU: peak live tensor bytes (torch.profiler); allocator overhead not included"
        out["measured_bytes"] = int(cpu_peak)
        out["estimate_compared_bytes"] = est.total_bytes - est.parts["allocator_overhead"]
        out["rss_growth_bytes"] = int(max(0, peak_rss - rss0))  # also counts mapped files, caches, Python
    out["error_pct"] = round(100.0 * (out["estimate_compared_bytes"] - out["measured_bytes"]) / max(1, out["measured_bytes"]), 1)
    return out


def run_probe_subprocess(args, est, data, cfg) -> dict:
    """Called by `ftwizard estimate --probe`: write the effective config, run the probe."""
    import subprocess
    import tempfile
    from pathlib import Path

    from ftwizard.config import config_from_dict, default_config

    i = est.input
    if cfg is None:
        cfg = default_config(Path(data) if data else Path("none.jsonl"))
    d = cfg.to_dict()
    d["model"]["base"] = i.model if isinstance(i.model, str) else d["model"]["base"]
    d["model"]["method"] = i.method
    d["data"]["max_length"] = i.max_length
    if data:
        d["data"]["train"] = str(Path(data).resolve())
    from ftwizard.hardware.estimate import _CONFIG_OPTIMIZER

    opt = {v: k for k, v in _CONFIG_OPTIMIZER.items()}[i.optimizer]
    d["training"].update(batch_size=i.micro_batch, gradient_accumulation=i.grad_accum,
                         gradient_checkpointing=i.gradient_checkpointing, optimizer=opt)
    d["lora"].update(r=i.lora_r, dropout=i.lora_dropout,
                     target_modules=i.lora_targets if isinstance(i.lora_targets, str) else list(i.lora_targets))
    config_from_dict(d)  # validate before spending minutes
    with tempfile.TemporaryDirectory(prefix="ftwizard-probe-") as tmp:
        cpath = Path(tmp) / "probe.yaml"
        opath = Path(tmp) / "probe.json"
        import yaml

        cpath.write_text(yaml.safe_dump(d, sort_keys=False))
        cmd = [sys.executable, "-m", "ftwizard.hardware.probe", "--config", str(cpath), "--steps",
               str(getattr(args, "probe_steps", 2)), "--out", str(opath)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            return {"error": "the probe took longer than 30 minutes and was stopped"}
        if r.returncode != 0 or not opath.is_file():
            lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
            oom = any("out of memory" in ln.lower() for ln in lines)
            msg = "out of memory: the run does not fit" if oom else (lines[-1] if lines else f"exit code {r.returncode}")
            return {"error": msg, "oom": oom}
        return json.loads(opath.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftwizard.hardware.probe", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from ftwizard.errors import UserError

    try:
        res = probe(a.config, a.steps)
    except UserError as e:
        print(e.render(), file=sys.stderr)
        return 1
    text = json.dumps(res, indent=2)
    if a.out:
        from pathlib import Path

        from ftwizard.fileio import atomic_write_text

        atomic_write_text(Path(a.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
