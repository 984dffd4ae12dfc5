"""What to change when a run does not fit: ranked fixes, each with its own re-estimate.

Each candidate is applied to the input and estimated again, so an advice line never
promises a fit that the estimator itself would not grant. Fixes are ranked by what
they cost the person: first those that keep the result identical (gradient
checkpointing, smaller micro-batch with more accumulation, an 8-bit optimizer), then
those that change the method (LoRA, QLoRA), then those that change the data or the
hardware (shorter max length, more GPUs), and last a smaller model. When no single fix
is enough, the cheapest combination that fits is offered as well.
"""

from __future__ import annotations

from ftwizard.hardware.shapes import BUILTIN, ModelShape

# lower is less painful
_PAIN = {
    "gradient_checkpointing": 1,
    "micro_batch": 2,
    "optimizer": 3,
    "method": 4,
    "max_length": 5,
    "n_gpus": 6,
    "model": 7,
    "combined": 8,
}


def _try(inp, shape, gpu, change: str, kind: str, **settings):
    from ftwizard.hardware.estimate import memory_only, verdict_for

    new = inp.with_changes(**settings)
    new_shape = shape if "model" not in settings else settings["model"]
    mem, _, _ = memory_only(new, new_shape if isinstance(new_shape, ModelShape) else None, gpu)
    shown = {k: (v.name if isinstance(v, ModelShape) else v) for k, v in settings.items()}
    return {
        "change": change,
        "settings": shown,
        "total_bytes": mem.total_bytes,
        "verdict": verdict_for(mem.total_bytes, gpu),
        "_pain": _PAIN[kind],
    }


def _candidates(inp, shape, gpu) -> list[dict]:
    out = []
    if not inp.gradient_checkpointing:
        out.append(_try(inp, shape, gpu, "turn on gradient checkpointing (about 30 % slower, same result)",
                        "gradient_checkpointing", gradient_checkpointing=True))
    b, a = inp.micro_batch, inp.grad_accum
    while b > 1:
        b = max(1, b // 2)
        eff = inp.micro_batch * inp.grad_accum
        a = max(1, -(-eff // b))
        cand = _try(inp, shape, gpu, f"micro-batch {b} with gradient accumulation {a} (same effective batch {b * a})",
                    "micro_batch", micro_batch=b, grad_accum=a)
        out.append(cand)
        if cand["verdict"] == "fits":
            break
    if inp.optimizer in ("adamw", "paged_adamw32bit") and inp.method == "full":
        out.append(_try(inp, shape, gpu, "8-bit AdamW (bitsandbytes): optimizer states 4x smaller",
                        "optimizer", optimizer="adamw8bit"))
    if inp.method == "full":
        out.append(_try(inp, shape, gpu, "LoRA instead of full fine-tuning (90-95 % of full quality; guidance)",
                        "method", method="lora"))
    if inp.method in ("full", "lora"):
        out.append(_try(inp, shape, gpu, "QLoRA: adapters over a 4-bit NF4 base (slower, high quality; guidance)",
                        "method", method="qlora"))
    n = inp.max_length
    while n > 256:
        n //= 2
        cand = _try(inp, shape, gpu, f"max length {n} (longer examples get truncated)", "max_length", max_length=n)
        if inp.lengths:
            cut = sum(1 for x in inp.lengths if x > n)
            cand["change"] += f": {cut} of {len(inp.lengths)} rows"
        out.append(cand)
        if cand["verdict"] == "fits":
            break
    if inp.method == "full":
        g = inp.n_gpus
        while g < 8:
            g *= 2
            cand = _try(inp, shape, gpu, f"{g} GPUs with FSDP (shards weights, gradients, optimizer)",
                        "n_gpus", n_gpus=g, strategy="fsdp")
            out.append(cand)
            if cand["verdict"] == "fits":
                break
    for s in _smaller_relatives(shape):
        cand = _try(inp, shape, gpu, f"a smaller base: {s.name} ({s.total_params / 1e9:.1f}B)", "model", model=s)
        out.append(cand)
        if cand["verdict"] == "fits":
            break
    return out


def _family(s: ModelShape) -> tuple[str, str] | None:
    """Built-in bases of one family share an architecture and a publisher (Llama 3.1/3.2, Qwen2.5, ...)."""
    if not s.hub_id:
        return None
    return (s.model_type.replace("_text", ""), s.hub_id.split("/")[0])


def _smaller_relatives(shape: ModelShape) -> list[ModelShape]:
    fam = _family(shape) or (_family(find) if (find := _builtin_twin(shape)) else None)
    if fam is None:
        return []
    return sorted((s for s in BUILTIN if s.name != "embedded" and _family(s) == fam
                   and s.total_params < 0.9 * shape.total_params), key=lambda s: -s.total_params)


def _builtin_twin(shape: ModelShape) -> ModelShape | None:
    """The built-in entry with the same shape as a model read from a folder or the cache."""
    for s in BUILTIN:
        if (s.hidden, s.layers, s.heads, s.kv_heads, s.intermediate, s.vocab) == (
                shape.hidden, shape.layers, shape.heads, shape.kv_heads, shape.intermediate, shape.vocab):
            return s
    return None


def _combined(inp, shape, gpu) -> dict | None:
    """Apply fixes cumulatively, least painful first, until the run fits."""
    steps: dict = {}
    labels = []
    plan = [("gradient_checkpointing", True, "gradient checkpointing")]
    if inp.method == "full":
        plan.append(("method", "lora", "LoRA"))
    plan.append(("micro_batch", 1, "micro-batch 1"))
    plan.append(("method", "qlora", "QLoRA"))
    n = inp.max_length
    while n > 256:
        n //= 2
        plan.append(("max_length", n, f"max length {n}"))
    for key, val, label in plan:
        if getattr(inp, key) == val or (key == "method" and steps.get("method") == "qlora"):
            continue
        steps[key] = val
        if key == "micro_batch":
            steps["grad_accum"] = inp.grad_accum * inp.micro_batch
        labels.append(label)
        cand = _try(inp, shape, gpu, "combined: " + " + ".join(labels), "combined", **steps)
        if cand["verdict"] == "fits":
            # as painful as its most painful step, and a little more for being several changes
            cand["_pain"] = max(_PAIN[k] for k in steps if k in _PAIN) + 0.5
            return cand
    return None


def advise(inp, shape: ModelShape, gpu) -> list[dict]:
    cands = _candidates(inp, shape, gpu)
    combo = _combined(inp, shape, gpu)
    if combo and combo["settings"].keys() - {"grad_accum"} and len(combo["change"].split(" + ")) > 1:
        cands.append(combo)
    now = _current(inp, shape, gpu)
    # Of the stepped fixes (batch, length, GPUs, model) keep only the last step tried:
    # the first that fits, or the furthest.
    best: dict = {}
    for c in cands:
        if c["total_bytes"] >= now:
            continue
        key = c["_pain"] if c["_pain"] in (_PAIN["micro_batch"], _PAIN["max_length"], _PAIN["n_gpus"], _PAIN["model"]) else c["change"]
        if key in best and c["_pain"] in (_PAIN["micro_batch"], _PAIN["max_length"]) and best[key]["verdict"] == "fits":
            continue
        best[key] = c
    ranked = sorted(best.values(), key=lambda c: ({"fits": 0, "tight": 1, "does_not_fit": 2}[c["verdict"]], c["_pain"], c["total_bytes"]))
    return [{k: v for k, v in c.items() if k != "_pain"} for c in ranked]


def _current(inp, shape, gpu) -> int:
    from ftwizard.hardware.estimate import memory_only

    return memory_only(inp, shape, gpu)[0].total_bytes
