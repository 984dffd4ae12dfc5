"""Checks that an exported file still is the fine-tuned model: load it back, continue a
few chat prompts greedily, and compare with the model held in memory.

Two measures, because they catch different faults:
- greedy continuations, token for token (a wrong template, a lost adapter, swapped
  embeddings all change them), which must also end with the end-of-turn token before
  the token limit (a model that never stops is the classic broken GGUF/Modelfile);
- logits under teacher forcing on the reference continuation: the largest absolute
  difference and the share of positions whose top-1 token agrees. Quantised files
  are held to these with stated tolerances, since their greedy text may drift.

Heavy (torch): imported only by the export worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Tolerances, stated once. Logits of a 49k-vocabulary model are O(10).
EXACT_ATOL = 1e-2        # same weights reloaded: only fp32 summation order differs (seen: 2e-3)
MERGE_ATOL = 2e-2        # fp32 merge vs adapter-on-the-fly: sums in another order
QUANT_TOP1 = 0.90        # q8_0: share of positions whose top-1 token agrees, at least
QUANT_ATOL = 1.5         # q8_0: largest logit difference, at most


@dataclass
class Reference:
    """Greedy continuations and their teacher-forced logits from one model."""

    prompts: list[list[int]]
    tokens: list[list[int]]
    logits: list[Any] = field(repr=False)     # one [len(cont), vocab] float32 tensor per prompt


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, **({"metrics": self.metrics} if self.metrics else {})}


def encode_prompts(tok, conversations: list[list[dict]]) -> list[list[int]]:
    out = []
    for msgs in conversations:
        ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        out.append(list(ids))
    return out


def stop_ids(tok, model=None) -> list[int]:
    ids: list[int] = []
    if tok.eos_token_id is not None:
        ids.append(int(tok.eos_token_id))
    gc = getattr(model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None) if gc is not None else None
    for i in (eos if isinstance(eos, list) else [eos] if eos is not None else []):
        if int(i) not in ids:
            ids.append(int(i))
    return ids


def run_reference(model, prompts: list[list[int]], stops: list[int], max_new_tokens: int, pad_id: int) -> Reference:
    tokens = [greedy(model, p, stops, max_new_tokens, pad_id) for p in prompts]
    logits = [teacher_logits(model, p, t) for p, t in zip(prompts, tokens)]
    return Reference(prompts, tokens, logits)


def _device(model):
    return next(model.parameters()).device


def greedy(model, prompt: list[int], stops: list[int], max_new_tokens: int, pad_id: int) -> list[int]:
    import torch

    ids = torch.tensor([prompt], device=_device(model))
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stops, pad_token_id=pad_id,
                             temperature=None, top_p=None, top_k=None)
    cont = out[0, len(prompt):].tolist()
    for i, t in enumerate(cont):  # cut at the first stop token (generate pads after it in batches)
        if t in stops:
            return cont[:i + 1]
    return cont


def teacher_logits(model, prompt: list[int], cont: list[int]):
    """Logits predicting each continuation token, as float32 on the CPU."""
    import torch

    if not cont:
        return torch.zeros(0, 1)
    ids = torch.tensor([prompt + cont], device=_device(model))
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:len(prompt) + len(cont) - 1]
    return logits.float().cpu()


def compare(name: str, model, ref: Reference, stops: list[int], max_new_tokens: int, pad_id: int, *,
            tokens_must_match: bool, atol: float | None, min_top1: float | None = None) -> CheckResult:
    """Compare `model` with the reference; also require each continuation to end with a stop token."""
    cand = [greedy(model, p, stops, max_new_tokens, pad_id) for p in ref.prompts]
    same = sum(c == r for c, r in zip(cand, ref.tokens))
    max_diff, agree, total = 0.0, 0, 0
    for p, r, lr in zip(ref.prompts, ref.tokens, ref.logits):
        if not r:
            continue
        lc = teacher_logits(model, p, r)
        max_diff = max(max_diff, float((lc - lr).abs().max()))
        agree += int((lc.argmax(-1) == lr.argmax(-1)).sum())
        total += len(r)
    top1 = agree / total if total else 1.0
    stopped = [bool(c) and c[-1] in stops and len(c) <= max_new_tokens for c in cand]
    metrics = {"prompts": len(cand), "identical_continuations": same, "max_abs_logit_diff": round(max_diff, 6),
               "top1_agreement": round(top1, 4), "stopped": sum(stopped),
               "continuation_lengths": [len(c) for c in cand]}
    problems = []
    if tokens_must_match and same != len(cand):
        problems.append(f"greedy continuations differ on {len(cand) - same} of {len(cand)} prompts")
    if atol is not None and max_diff > atol:
        problems.append(f"logits differ by up to {max_diff:.4g} (allowed {atol:g})")
    if min_top1 is not None and top1 < min_top1:
        problems.append(f"top-1 tokens agree on {top1:.1%} of positions (need {min_top1:.0%})")
    if not all(stopped):
        problems.append(f"{stopped.count(False)} of {len(cand)} chat prompts ran to the {max_new_tokens}-token "
                        f"limit without the end-of-turn token")
    detail = "; ".join(problems) if problems else (
        f"{same}/{len(cand)} greedy continuations identical, max logit diff {max_diff:.2g}, "
        f"top-1 agreement {top1:.1%}, all ended with the end-of-turn token")
    return CheckResult(name, not problems, detail, metrics)
