"""Held-out preference pairs: does the tuned model prefer the chosen answer, and by how much more than the base?

For each pair and each model, the summed log-probability of the chosen and of the rejected completion given
the prompt, tokenised exactly as TRL's DPOTrainer does (the chat template renders prompt and prompt+answer; the
completion starts where the two token sequences part; `data.max_length` truncates from the end). Then:

- pref_accuracy: share of pairs with logp(chosen) > logp(rejected) (a tie counts half);
- pref_accuracy_norm: the same on log-probabilities per token, which removes the pull of length;
- reward_margin: the DPO implicit reward margin against the base (the reference of a LoRA DPO run),
  beta * [(logp_t(c) - logp_b(c)) - (logp_t(r) - logp_b(r))], averaged over pairs; 0 for the base itself.
  Positive: training moved probability towards the chosen answers (Rafailov et al. 2023, eq. 5).

Each has per-row values, so the summary's paired bootstrap (evaluation/stats.py) gives tuned-vs-base intervals
like every other metric. When the run asks for generation (`evaluation.preference_generation`) the chosen
answer is also the reference for the usual text metrics (ROUGE-L, chrF, a custom scorer, eval loss on the
chosen answers, the regression probe), through the same `runner.evaluate_model` SFT evaluation uses.

Light at import (no torch): the launcher calls `preference_task`; the worker calls `run_preference_eval`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ftwizard.errors import UserError

METRICS = ("pref_accuracy", "pref_accuracy_norm", "reward_margin")
GENERATION_METRICS = ("rouge_l", "chrf")
DEFAULT_BETA = 0.1


# ---------------------------------------------------------------- the launcher's part (light)
def is_preference_file(path: Path, fmt: str = "auto") -> bool:
    """Whether a held-out file holds preference data (data.format says so, or its first readable row does)."""
    from ftwizard.data.formats import PREFERENCE_FORMATS, detect_format
    from ftwizard.data.loading import iter_records

    if fmt in PREFERENCE_FORMATS:
        return True
    if fmt not in (None, "auto"):
        return False
    for rec in iter_records(Path(path)):
        if isinstance(rec.value, dict):
            return detect_format(rec.value) in PREFERENCE_FORMATS
    return False


def load_pairs(path: Path, fmt: str = "auto", system_prompt: str | None = None,
               max_samples: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(row number, normalised pair) for the held-out pairs; KTO's unpaired rows cannot be scored this way."""
    from ftwizard.data.preference import iter_preference_rows

    out = []
    for row, kind, norm in iter_preference_rows(path, fmt=fmt or "auto", system_prompt=system_prompt):
        if kind != "pairs":
            raise UserError(f"{Path(path).name} row {row} is an unpaired (prompt/completion/label) row: preference "
                            "accuracy needs held-out pairs", where=f"{path}:{row}",
                            fix="hold out prompt/chosen/rejected pairs to evaluate on (KTO can train on pairs too)")
        out.append((row, norm))
        if max_samples and len(out) >= max_samples:
            break
    if not out:
        raise UserError(f"{path} has no pairs to evaluate", fix="check the held-out file")
    return out


def preference_task(cfg, eval_path: Path, max_samples: int | None, metric: str | None) -> dict[str, Any] | None:
    """The spec's preference part when the held-out file is preference data, else None (an SFT eval).
    Reads every pair once here, so a bad row is refused before any model loads."""
    if not is_preference_file(eval_path, cfg.data.format):
        return None
    load_pairs(eval_path, cfg.data.format, cfg.data.system_prompt, max_samples)
    scorer = cfg.evaluation.scorer
    scorer_name = scorer.split(":")[1] if scorer else None
    generate = bool(getattr(cfg.evaluation, "preference_generation", False))
    choices = list(METRICS) + (list(GENERATION_METRICS) + ["eval_loss"] + ([f"custom:{scorer_name}"] if scorer_name
                                                                         else []) if generate else [])
    metric = metric or cfg.evaluation.metric or "pref_accuracy"
    if metric not in choices and f"custom:{metric}" in choices:
        metric = f"custom:{metric}"
    if metric not in choices:
        raise UserError(f"metric {metric!r} does not apply to preference pairs", where="--metric / evaluation.metric",
                        fix="choose one of: " + ", ".join(choices))
    pref = getattr(cfg, "preference", None)
    return {"task": "preference", "metric": metric,
            "preference": {"beta": float(getattr(pref, "beta", DEFAULT_BETA)),
                           "generate": bool(getattr(cfg.evaluation, "preference_generation", False)),
                           "objective": getattr(cfg.training, "objective", None)}}


# ---------------------------------------------------------------- log-probabilities (heavy; worker only)
def _ids(tokenizer, messages: list[dict[str, str]], generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                        return_dict=True)
    ids = out["input_ids"]
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_pair(tokenizer, pair: dict[str, Any], max_length: int | None) -> list[tuple[list[int], int]]:
    """[(ids, completion start) for chosen, for rejected], as TRL's DPOTrainer tokenises a conversational pair."""
    prompt = _ids(tokenizer, pair["prompt"], generation_prompt=True)
    chosen = _ids(tokenizer, pair["prompt"] + pair["chosen"])
    rejected = _ids(tokenizer, pair["prompt"] + pair["rejected"])
    start = min(_common_prefix(prompt, chosen), _common_prefix(prompt, rejected))
    out = []
    for ids in (chosen, rejected):
        if max_length:
            ids = ids[:max_length]  # TRL's truncation_mode keep_start
        out.append((ids, min(start, len(ids))))
    return out


def sequence_logps(model, seqs: list[tuple[list[int], int]], pad_id: int, batch_size: int = 8,
                   progress=None) -> list[tuple[float, int]]:
    """(sum of log p(token) over the completion, its token count) for each (ids, completion start)."""
    import torch

    out: list[tuple[float, int]] = []
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    result: dict[int, tuple[float, int]] = {}
    dev = model.device
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(seqs[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            att = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.bool)
            for b, i in enumerate(idx):  # right padding, as in training
                toks, start = seqs[i]
                ids[b, :len(toks)] = torch.tensor(toks)
                att[b, :len(toks)] = 1
                mask[b, start:len(toks)] = True
            logits = model(input_ids=ids.to(dev), attention_mask=att.to(dev)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            tok_logp = logp.gather(-1, ids[:, 1:].to(dev).unsqueeze(-1)).squeeze(-1)
            m = mask[:, 1:].to(dev)
            sums = (tok_logp * m).sum(1)
            counts = m.sum(1)
            for b, i in enumerate(idx):
                result[i] = (float(sums[b]), int(counts[b]))
            if progress:
                progress(min(s + batch_size, len(order)), len(order))
    out = [result[i] for i in range(len(seqs))]
    return out


def pair_logps(engine, pairs: list[dict[str, Any]], max_length: int | None, batch_size: int = 8,
               progress=None) -> list[tuple[float, int, float, int]]:
    """Per pair, for the engine's active model: (logp chosen, its tokens, logp rejected, its tokens)."""
    seqs = []
    for p in pairs:
        seqs.extend(encode_pair(engine.tokenizer, p, max_length))
    with engine._context():
        flat = sequence_logps(engine.model, seqs, engine.tokenizer.pad_token_id, batch_size, progress)
    return [(flat[2 * i][0], flat[2 * i][1], flat[2 * i + 1][0], flat[2 * i + 1][1]) for i in range(len(pairs))]


# ---------------------------------------------------------------- scores (light)
def _win(a: float, b: float) -> float:
    return 1.0 if a > b else 0.0 if a < b else 0.5


def score(logps: list[tuple[float, int, float, int]], base: list[tuple[float, int, float, int]] | None,
          beta: float, is_base: bool) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    """Headline metrics and per-row values from per-pair log-probs (and the base's, for the margin)."""
    acc = [_win(c, r) for c, _, r, _ in logps]
    norm = [_win(c / max(nc, 1), r / max(nr, 1)) for c, nc, r, nr in logps]
    rows: dict[str, list[float]] = {"pref_accuracy": acc, "pref_accuracy_norm": norm,
                                    "logp_chosen": [x[0] for x in logps], "tokens_chosen": [x[1] for x in logps],
                                    "logp_rejected": [x[2] for x in logps], "tokens_rejected": [x[3] for x in logps]}
    margin: float | None
    if is_base:
        rows["reward_margin"] = [0.0] * len(logps)
        margin = 0.0
    elif base is not None and len(base) == len(logps):
        rows["reward_margin"] = [beta * ((c - bc) - (r - br)) for (c, _, r, _), (bc, _, br, _) in zip(logps, base)]
        margin = sum(rows["reward_margin"]) / len(logps)
    else:
        margin = None
    n = len(logps)
    return {"pref_accuracy": sum(acc) / n, "pref_accuracy_norm": sum(norm) / n, "reward_margin": margin}, rows


def _base_logps(eval_dir: Path) -> list[tuple[float, int, float, int]] | None:
    try:
        rows = json.loads((Path(eval_dir) / "base.json").read_text()).get("rows") or {}
    except (FileNotFoundError, ValueError):
        return None
    keys = ("logp_chosen", "tokens_chosen", "logp_rejected", "tokens_rejected")
    if not all(k in rows for k in keys):
        return None
    return list(zip(*(rows[k] for k in keys)))


# ---------------------------------------------------------------- the worker's part
def run_preference_eval(eval_dir: Path, spec: dict[str, Any], writer, log=print,
                        set_status=lambda **kw: None) -> dict[str, Any]:
    """runner.run_eval for a preference held-out file: the same plan, caching, per-model files and summary."""
    from ftwizard.evaluation import metrics as M
    from ftwizard.evaluation import runner
    from ftwizard.evaluation.compare import build_summary, write_summary
    from ftwizard.evaluation.generate import Engine
    from ftwizard.evaluation.probe import load_probe, probe_subset
    from ftwizard.evaluation.samples import EvalSample, file_digest
    from ftwizard.fileio import atomic_write_text
    from ftwizard.models.resolve import resolve_base

    eval_dir = Path(eval_dir)
    eval_path = Path(spec["eval_file"])
    digest = file_digest(eval_path)
    opts = spec.get("preference") or {}
    beta = float(opts.get("beta", DEFAULT_BETA))
    generate = bool(opts.get("generate", False))
    pairs = load_pairs(eval_path, spec.get("format", "auto"), spec.get("system_prompt"), spec.get("max_samples"))
    samples = [EvalSample(row=row, prompt=p["prompt"], reference="\n".join(m["content"] for m in p["chosen"]))
               for row, p in pairs]
    scorer = M.load_scorer(spec["scorer"], spec.get("config_dir")) if spec.get("scorer") and generate else None
    probe_items = probe_subset(load_probe(), spec.get("probe_size")) if spec.get("probe", True) and generate else []
    models = [m for m in spec["models"] if not m.get("few_shot")]  # a k-shot prompt changes no preference
    for m in spec["models"]:
        if m.get("few_shot"):
            writer.write("eval", event="model_skipped", model=m["id"], reason="k-shot rows do not apply to "
                         "preference pairs")
    models.sort(key=lambda m: m["kind"] != "base")  # the base first: its log-probs are every margin's reference
    writer.write("eval", event="plan", task="preference", samples=len(pairs), models=[m["id"] for m in models],
                 eval_file=str(eval_path))
    engine = None
    for n, m in enumerate(models, 1):
        key = f"{runner.result_key(spec, m, digest)}-pref-{beta:g}-{int(generate)}"
        out = eval_dir / f"{m['id']}.json"
        if runner.existing_result(out, key):
            writer.write("eval", event="model_skipped", model=m["id"], reason="already evaluated")
            continue
        if runner._baseline_copy(spec, m, key, out):
            writer.write("eval", event="model_skipped", model=m["id"], reason="baseline copied")
            continue
        if engine is None:
            base_path = resolve_base(spec["base"], log=log)
            engine = Engine(base_path, spec["method"], spec.get("trust_remote_code", False), spec.get("device", "auto"),
                            log=log)
            writer.write("eval", event="engine", device=engine.device, precision=engine.precision, base=base_path)
        set_status(current=m["id"], models_done=n - 1, models_total=len(models))
        res = evaluate_preference_model(engine, m, key, pairs, samples, spec, probe_items, writer, log, scorer,
                                        beta=beta, generate=generate, base=_base_logps(eval_dir))
        atomic_write_text(out, json.dumps(res, indent=1))
        writer.write("eval", event="model_done", model=m["id"],
                     **{k: v for k, v in res["metrics"].items() if isinstance(v, (int, float))})
    summary = build_summary(eval_dir, [m["id"] for m in models], primary=spec.get("metric") or "pref_accuracy")
    summary["preference"] = {"beta": beta, "pairs": len(pairs), "generated": generate,
                             "reference": "base (the adapter switched off), as a LoRA DPO run's reference"}
    write_summary(eval_dir, summary)
    return summary


def evaluate_preference_model(engine, model: dict[str, Any], key: str, pairs, samples, spec: dict[str, Any],
                              probe_items, writer, log=print, scorer=None, *, beta: float = DEFAULT_BETA,
                              generate: bool = False, base=None) -> dict[str, Any]:
    from ftwizard.evaluation import runner

    mid = model["id"]
    if generate:  # the usual task metrics against the chosen answer (also loads the model)
        res = runner.evaluate_model(engine, model, key, samples, "text", spec, probe_items, writer, log, scorer=scorer)
    else:
        writer.write("eval", event="model_start", model=mid, label=model["label"])
        engine.use(model["kind"], model.get("path"), mid)
        res = {"version": runner.RESULT_VERSION, "key": key, "id": mid, "label": model["label"], "kind": model["kind"],
               "path": model.get("path"), "step": model.get("step"), "few_shot": 0, "metrics": {}, "details": {},
               "probe": None, "rows": {}, "samples": [], "timing": {}, "device": engine.device,
               "precision": engine.precision, "threads": runner._threads(), "created_at": time.time()}
    t0 = time.perf_counter()
    batch = spec.get("batch_size") or runner.DEFAULT_BATCH.get(engine.device, 8)

    def progress(done, total):
        writer.write("eval", event="progress", model=mid, phase="preference", done=done, total=total)

    logps = pair_logps(engine, [p for _, p in pairs], spec.get("max_length"), max(1, batch // 2), progress)
    metrics, rows = score(logps, base, beta, model["kind"] == "base")
    res["key"] = key
    res["task"] = "preference"
    res["metrics"] = {**metrics, **res["metrics"]}
    res["rows"] = {**res["rows"], **rows}
    res["details"] = {**(res.get("details") or {}), "preference": {
        "beta": beta, "pairs": len(pairs),
        "mean_logp_chosen": sum(x[0] for x in logps) / len(logps),
        "mean_logp_rejected": sum(x[2] for x in logps) / len(logps),
        "margin_reference": "base" if model["kind"] == "base" or base is not None else None}}
    res.setdefault("timing", {})["preference_s"] = round(time.perf_counter() - t0, 2)
    if metrics["reward_margin"] is None:
        log(f"{mid}: no base log-probs to measure the reward margin against (evaluate the base too)")
    for k, v in list(res["metrics"].items()):
        if isinstance(v, float) and not math.isfinite(v):
            res["metrics"][k] = None
    return res
