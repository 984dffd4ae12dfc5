"""Checks that an exported file still is the fine-tuned model: load it back, continue a
fixed set of chat prompts greedily, and compare with the reference (the model as trained).

Two questions, kept apart:

- **Fidelity** (pass/fail): does the export answer like the trained model? Greedy
  continuations must be identical, or agree on the top-1 token at a documented rate
  (`TOP1_LOSSLESS` for files that hold the same weights, `TOP1_QUANT` per quantisation).
  Files that should hold the same numbers are also held to a logit tolerance that follows
  the dtype and the logit magnitude (`logit_tolerance`): rounding a merged weight to fp16
  moves logits of size 30 by a few hundredths, which is expected, not a failure. An
  export that runs past the end-of-turn where the trained model stopped fails (the
  classic GGUF that never stops).
- **Behaviour** (warning only): does the trained model itself end its turn within the
  token limit? A faithful export of a model that rambles is an export that passed; the
  rambling is reported as a warning about the model, not about the file.

A failure names the prompt, the first differing token and both texts.
Heavy (torch): imported only by the export worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

# ---- documented rates and tolerances ---------------------------------------------------
# Files holding the same weights (reloads, the fp32 merge, 16-bit copies): greedy text may
# flip at a near-tie, so identical text OR this top-1 agreement passes.
TOP1_LOSSLESS = 0.98
# Quantised GGUF files: share of positions (teacher-forced on the trained model's text)
# whose top-1 token agrees. q8_0 measured 100 % on the embedded model; k-quants lose more.
TOP1_QUANT = {"q8_0": 0.90, "q6_k": 0.85, "q5_k_m": 0.80, "q4_k_m": 0.70, "q4_0": 0.70}
# Logit tolerance relative to the largest |logit| of the reference, by the dtype the
# weights were rounded to: 8 units of the format's rounding (fp16 2^-11, bf16 2^-8), and
# for fp32 the spread of summation order through a deep net (seen: 1e-4 relative).
REL_TOL = {"fp32": 1e-3, "fp16": 8 * 2.0 ** -11, "bf16": 8 * 2.0 ** -8}
# NF4 layers dequantise blocks to bf16 before the matmul; the fp32 merge does not.
REL_TOL["nf4"] = REL_TOL["bf16"]

# The old absolute names, kept for callers that still pass them: same meaning at logit scale 10.
EXACT_ATOL = 1e-2
QUANT_TOP1 = TOP1_QUANT["q8_0"]
QUANT_ATOL = 1.5
MERGE_ATOL = 2e-2


def logit_tolerance(dtype: str, scale: float) -> float:
    """Largest logit difference expected from rounding weights to `dtype`, at logit magnitude `scale`."""
    return REL_TOL[dtype] * max(scale, 1.0)


def limit_from_answers(token_counts: list[int]) -> int:
    """Generation limit sized from the data, as evaluation sizes it: the longest answer x1.5 + 16."""
    longest = max(token_counts, default=48)
    return min(1024, math.ceil(longest * 1.5) + 16)


@dataclass
class Reference:
    """Greedy continuations and their teacher-forced logits from one model."""

    prompts: list[list[int]]
    tokens: list[list[int]]
    logits: list[Any] = field(repr=False)     # one [len(cont), vocab] float32 tensor per prompt
    stops: list[int] = field(default_factory=list)
    max_new_tokens: int = 0

    def scale(self) -> float:
        return max((float(x.abs().max()) for x in self.logits if x.numel()), default=1.0)

    def stopped(self, i: int) -> bool:
        t = self.tokens[i]
        return bool(t) and t[-1] in self.stops


@dataclass
class Candidate:
    """What an exported file did on the reference's prompts.

    tokens: its own greedy continuations; top1: its argmax at each position of the
    reference continuation (teacher forcing); max_diff: the largest logit difference
    measured there (None when not measured)."""

    tokens: list[list[int]]
    top1: list[list[int]]
    max_diff: float | None = None
    note: str | None = None
    logits: list[Any] | None = field(default=None, repr=False)  # teacher-forced on the reference's text


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    metrics: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "ok": self.ok, "detail": self.detail}
        if self.metrics:
            d["metrics"] = self.metrics
        if self.warnings:
            d["warnings"] = self.warnings
        return d


def encode_prompts(tok, conversations: list[list[dict]]) -> list[list[int]]:
    out = []
    for msgs in conversations:
        ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False,
                                      tools=getattr(msgs, "tools", None))  # a tool-calling row keeps its tool list
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
    return Reference(prompts, tokens, logits, list(stops), max_new_tokens)


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


def candidate(model, ref: Reference, on_prompt: Callable[[int], None] | None = None) -> Candidate:
    """Run a transformers model on the reference's prompts: greedy text, top-1 and logit difference."""
    toks, top1, logits, max_diff = [], [], [], 0.0
    for i, (p, r, lr) in enumerate(zip(ref.prompts, ref.tokens, ref.logits)):
        toks.append(greedy(model, p, ref.stops, ref.max_new_tokens, ref.stops[0] if ref.stops else 0))
        if r:
            lc = teacher_logits(model, p, r)
            max_diff = max(max_diff, float((lc - lr).abs().max()))
            top1.append(lc.argmax(-1).tolist())
            logits.append(lc)
        else:
            import torch

            top1.append([])
            logits.append(torch.zeros(0, 1))
        if on_prompt:
            on_prompt(i)
    return Candidate(toks, top1, max_diff, logits=logits)


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def judge(name: str, ref: Reference, cand: Candidate, *, min_top1: float, dtype: str | None = None,
          decode: Callable[[list[int]], str] | None = None, prompt_labels: list[str] | None = None) -> CheckResult:
    """The verdict on one export: fidelity decides ok; the trained model's own rambling is a warning."""
    decode = decode or (lambda ids: " ".join(map(str, ids)))
    labels = prompt_labels or [f"prompt {i + 1}" for i in range(len(ref.prompts))]
    n = len(ref.prompts)
    same = sum(c == r for c, r in zip(cand.tokens, ref.tokens))
    agree = total = 0
    for r, t in zip(ref.tokens, cand.top1):
        # position k of the teacher-forced pass predicts reference token k (greedy = the reference's argmax)
        agree += sum(int(x == y) for x, y in zip(r, t))
        total += len(r)
    top1 = agree / total if total else 1.0
    scale = ref.scale()
    tol = logit_tolerance(dtype, scale) if dtype else None
    stopped = [bool(c) and c[-1] in ref.stops for c in cand.tokens]
    metrics = {"prompts": n, "identical_continuations": same, "top1_agreement": round(top1, 4),
               "min_top1": min_top1, "stopped": sum(stopped), "max_new_tokens": ref.max_new_tokens,
               "continuation_lengths": [len(c) for c in cand.tokens], "logit_scale": round(scale, 3)}
    if cand.max_diff is not None:
        metrics["max_abs_logit_diff"] = round(cand.max_diff, 6)
    if tol is not None:
        metrics["logit_tolerance"] = round(tol, 6)
        metrics["dtype"] = dtype
    problems = []
    text_ok = same == n or top1 >= min_top1
    if not text_ok:
        problems.append(f"greedy continuations differ on {n - same} of {n} prompts and top-1 tokens agree on "
                        f"{top1:.1%} of positions (need identical text or {min_top1:.0%})")
    if tol is not None and cand.max_diff is not None and cand.max_diff > tol:
        problems.append(f"logits differ by up to {cand.max_diff:.4g}, more than {dtype} rounding explains "
                        f"({tol:.3g} = {REL_TOL[dtype]:.2g} x largest logit {scale:.3g})")
    runaway = [i for i in range(n) if ref.stopped(i) and not stopped[i]]
    if runaway:
        problems.append(f"ran past the end-of-turn on {len(runaway)} of {n} prompts where the trained model "
                        f"stopped ({labels[runaway[0]]})")
    diffs = []
    for i in range(n):
        k = first_difference(ref.tokens[i], cand.tokens[i])
        if k is None:
            continue
        r_tok = decode(ref.tokens[i][k:k + 1]) if k < len(ref.tokens[i]) else "(end)"
        c_tok = decode(cand.tokens[i][k:k + 1]) if k < len(cand.tokens[i]) else "(end)"
        diffs.append(f"{labels[i]}: first difference at token {k + 1}: trained {r_tok!r}, export {c_tok!r}; "
                     f"trained text {decode(ref.tokens[i])!r}; export text {decode(cand.tokens[i])!r}")
    warnings = []
    rambling = [i for i in range(n) if not ref.stopped(i)]
    if rambling:
        warnings.append(f"behaviour: the trained model itself did not end its turn within {ref.max_new_tokens} "
                        f"tokens on {len(rambling)} of {n} prompts ({labels[rambling[0]]}); the export matches it, "
                        "so this is about the model, not the file")
    if problems:
        detail = "; ".join(problems) + (" -- " + " | ".join(diffs[:2]) if diffs else "")
    else:
        detail = f"{same}/{n} greedy continuations identical, top-1 agreement {top1:.1%}"
        if cand.max_diff is not None:
            detail += f", max logit diff {cand.max_diff:.2g}" + (f" (tolerance {tol:.2g} for {dtype})" if tol else "")
        detail += "; every answer ended its turn where the trained model's did"
        if diffs:
            detail += f" (texts differ on {len(diffs)} prompt(s) -- {diffs[0]})"
    if cand.note:
        detail += f" [{cand.note}]"
    if diffs:
        metrics["differences"] = diffs
    return CheckResult(name, not problems, detail, metrics, warnings)


def compare(name: str, model, ref: Reference, stops: list[int] | None = None, max_new_tokens: int | None = None,
            pad_id: int | None = None, *, tokens_must_match: bool = True, atol: float | None = None,
            min_top1: float | None = None, dtype: str | None = None, decode=None,
            prompt_labels: list[str] | None = None) -> CheckResult:
    """Run `model` against the reference and judge it (see `judge`).

    `tokens_must_match=True` means lossless (TOP1_LOSSLESS unless min_top1 is given);
    `atol`, when given without a dtype, is an absolute logit tolerance (old callers)."""
    if stops is not None:
        ref.stops = list(stops)
    if max_new_tokens is not None:
        ref.max_new_tokens = max_new_tokens
    cand = candidate(model, ref)
    top = min_top1 if min_top1 is not None else (TOP1_LOSSLESS if tokens_must_match else QUANT_TOP1)
    res = judge(name, ref, cand, min_top1=top, dtype=dtype, decode=decode, prompt_labels=prompt_labels)
    if atol is not None and dtype is None and cand.max_diff is not None and cand.max_diff > atol:
        res.ok = False
        msg = f"logits differ by up to {cand.max_diff:.4g} (allowed {atol:g})"
        res.detail = msg if res.detail.startswith(f"{res.metrics['identical_continuations']}/") else \
            res.detail + "; " + msg
    return res
