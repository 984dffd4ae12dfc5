"""Evaluate every model of a spec into its eval folder, skipping results already there.

Inside the eval worker process (heavy: it drives `generate.Engine`). For each model:
generate on the held-out prompts, score the task metrics, compute the teacher-forced
eval loss, run the regression probe, and write `<model>.json` atomically. Then the
summary. Progress goes to `events.jsonl` in the eval folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ftwizard.evaluation import metrics as M
from ftwizard.evaluation.generate import loss_from_rows
from ftwizard.evaluation.probe import load_probe, probe_subset, score_probe
from ftwizard.evaluation.samples import EvalSample, file_digest, load_samples, with_few_shot
from ftwizard.fileio import atomic_write_text
from ftwizard.rundir import EventWriter

RESULT_VERSION = 2  # 2: per-row values, stop flags, behaviour, math and per-field metrics
PROBE_MAX_NEW_TOKENS = 48
DEFAULT_BATCH = {"cpu": 8, "cuda": 32}


def max_new_tokens_for(engine, references: list[str]) -> int:
    """Room for the longest reference plus a margin; outputs normally stop at end-of-turn well before."""
    longest = max(engine.token_count(r) for r in references)
    return min(1024, math.ceil(longest * 1.5) + 16)


def weights_stamp(path: str | None) -> str | None:
    """Changes when the weights in a folder change (a re-trained checkpoint is evaluated again)."""
    if not path:
        return None
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix in (".safetensors", ".bin")) if p.is_dir() else []
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)


def result_key(spec: dict[str, Any], model: dict[str, Any], eval_digest: str) -> str:
    ident = {
        "v": RESULT_VERSION, "base": spec["base"], "qlora": spec["method"] == "qlora", "eval": eval_digest,
        "max_samples": spec.get("max_samples"), "system_prompt": spec.get("system_prompt"),
        "format": spec.get("format"), "max_length": spec.get("max_length"),
        "probe": spec.get("probe", True), "probe_size": spec.get("probe_size"),
        "kind": model["kind"], "few_shot": model.get("few_shot", 0), "weights": weights_stamp(model.get("path")),
        "task": spec.get("task"), "task_type": spec.get("task_type"), "scorer": spec.get("scorer"),
    }
    if spec.get("chat_template", "auto") != "auto":  # the base renders with another template (h14d)
        ident["chat_template"] = spec["chat_template"]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def run_tokenizer_folder(spec: dict[str, Any]) -> str | None:
    """The tokenizer the run saved with its adapter or model (its chat template, any added tokens); every model
    of a run, the base included, is scored with it. None: no trained model in the spec (a baseline)."""
    from ftwizard.models.vocab import has_tokenizer

    for m in spec["models"]:
        if m.get("path") and has_tokenizer(m["path"]):
            return m["path"]
    return None


def existing_result(path: Path, key: str) -> dict[str, Any] | None:
    try:
        res = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return res if res.get("key") == key else None


def few_shot_examples(spec: dict[str, Any], k: int) -> list[EvalSample]:
    if not spec.get("train_file"):
        return []
    return load_samples(Path(spec["train_file"]), spec.get("format", "auto"), spec.get("system_prompt"), max_samples=k)


def run_eval(eval_dir: Path, spec: dict[str, Any], writer: EventWriter, log=print,
             set_status=lambda **kw: None) -> dict[str, Any]:
    """Evaluate the spec's models; returns the summary (also written to summary.json)."""
    if spec.get("task") == "preference":  # held-out preference pairs (h14b): ftwizard.evaluation.preference
        from ftwizard.evaluation.preference import run_preference_eval

        return run_preference_eval(eval_dir, spec, writer, log, set_status)
    from ftwizard.evaluation.compare import build_summary, write_summary
    from ftwizard.evaluation.generate import Engine
    from ftwizard.models.resolve import resolve_base

    eval_dir = Path(eval_dir)
    eval_path = Path(spec["eval_file"])
    digest = file_digest(eval_path)
    samples = load_samples(eval_path, spec.get("format", "auto"), spec.get("system_prompt"), spec.get("max_samples"))
    refs = [s.reference for s in samples]
    task = spec.get("task") or M.detect_task(refs, spec.get("task_type"))
    scorer = M.load_scorer(spec["scorer"], spec.get("config_dir")) if spec.get("scorer") else None
    probe_items = probe_subset(load_probe(), spec.get("probe_size")) if spec.get("probe", True) else []
    models = [m for m in spec["models"] if not m.get("few_shot") or _shots_ok(spec, m, writer)]
    writer.write("eval", event="plan", task=task, samples=len(samples), models=[m["id"] for m in models],
                 eval_file=str(eval_path))

    todo = []
    for m in models:
        key = result_key(spec, m, digest)
        out = eval_dir / f"{m['id']}.json"
        if existing_result(out, key):
            writer.write("eval", event="model_skipped", model=m["id"], reason="already evaluated")
            continue
        cached = _baseline_copy(spec, m, key, out)
        if cached:
            writer.write("eval", event="model_skipped", model=m["id"], reason=f"baseline from {cached}")
            continue
        todo.append((m, key, out))

    engine = None
    for n, (m, key, out) in enumerate(todo, 1):
        if engine is None:
            base_path = resolve_base(spec["base"], log=log)
            engine = Engine(base_path, spec["method"], spec.get("trust_remote_code", False), spec.get("device", "auto"),
                            log=log, tokenizer_path=run_tokenizer_folder(spec),
                            chat_template=spec.get("chat_template", "auto"))
            writer.write("eval", event="engine", device=engine.device, precision=engine.precision, base=base_path)
        set_status(current=m["id"], models_done=len(models) - len(todo) + n - 1, models_total=len(models))
        res = evaluate_model(engine, m, key, samples, task, spec, probe_items, writer, log, scorer=scorer)
        atomic_write_text(out, json.dumps(res, indent=1))
        writer.write("eval", event="model_done", model=m["id"],
                     **{k: v for k, v in res["metrics"].items() if isinstance(v, (int, float))})

    if spec.get("judge"):  # LLM judge (h18b, ftwizard.evaluation.judge): off unless configured; the summary shows it
        from ftwizard.evaluation.judge import run_judge_step

        run_judge_step(eval_dir, spec["judge"], writer, log)
    summary = build_summary(eval_dir, [m["id"] for m in models], primary=spec.get("metric"))
    write_summary(eval_dir, summary)
    return summary


def _shots_ok(spec: dict[str, Any], model: dict[str, Any], writer: EventWriter) -> bool:
    """A k-shot row needs k chat rows in the training file; otherwise it is left out, with an event saying why."""
    from ftwizard.errors import UserError

    try:
        n = len(few_shot_examples(spec, model["few_shot"]))
    except UserError as e:
        n, why = 0, e.what
    else:
        why = f"the training file has {n} usable rows, fewer than {model['few_shot']}"
    if n >= model["few_shot"]:
        return True
    writer.write("eval", event="model_skipped", model=model["id"], reason=f"no k-shot prompt: {why}")
    return False


def _baseline_copy(spec: dict[str, Any], model: dict[str, Any], key: str, out: Path) -> str | None:
    """Reuse a pre-training baseline of the same base model, data and prompt."""
    bdir = spec.get("baseline_dir")
    if model["kind"] != "base" or not bdir:
        return None
    src = Path(bdir) / f"{model['id']}.json"
    if existing_result(src, key) and src.resolve() != out.resolve():
        shutil.copyfile(src, out)
        return str(src)
    return None


def evaluate_model(engine, model: dict[str, Any], key: str, samples: list[EvalSample], task: str,
                   spec: dict[str, Any], probe_items: list[dict[str, Any]], writer: EventWriter, log=print,
                   scorer=None) -> dict:
    mid = model["id"]
    writer.write("eval", event="model_start", model=mid, label=model["label"])
    engine.use(model["kind"], model.get("path"), mid)
    batch = spec.get("batch_size") or DEFAULT_BATCH.get(engine.device, 8)
    k = model.get("few_shot", 0)
    prompts = with_few_shot(samples, few_shot_examples(spec, k)) if k else samples
    refs = [s.reference for s in samples]

    def progress(phase):
        last = [0.0]

        def cb(done, total):
            now = time.time()
            if done == total or now - last[0] > 1.0:
                last[0] = now
                writer.write("eval", event="progress", model=mid, phase=phase, done=done, total=total)
        return cb

    t0 = time.perf_counter()
    max_new = max_new_tokens_for(engine, refs)
    outputs, stopped = engine.generate([s.prompt for s in prompts], max_new, batch, progress("generate"),
                                       with_stops=True)
    gen_s = time.perf_counter() - t0
    scorer_name = spec["scorer"].split(":")[1] if scorer is not None else None
    scores = M.score_rows(task, outputs, refs, stopped=stopped, kinds=M.field_kinds(refs) if task == "json" else None,
                          scorer=scorer, scorer_name=scorer_name)

    t0 = time.perf_counter()
    rows = engine.encode_for_loss(prompts, spec.get("max_length") or 2048)
    loss_rows = engine.loss_rows(rows, max(1, batch // 2), progress("loss"))
    loss = loss_from_rows(loss_rows)
    loss_s = time.perf_counter() - t0

    probe = None
    probe_s = 0.0
    if probe_items and not k:  # a k-shot prompt does not change the weights: its probe is the base's
        t0 = time.perf_counter()
        probe_out = engine.generate([[{"role": "user", "content": it["prompt"]}] for it in probe_items],
                                    PROBE_MAX_NEW_TOKENS, batch, progress("probe"))
        probe = score_probe(probe_items, probe_out)
        probe_s = time.perf_counter() - t0

    headline = dict(scores.metrics)
    tool_calls = _tool_calls(engine, spec, batch, progress("tools"))  # rows that use tools (h14c)
    if tool_calls is not None:
        headline.update({k: v for k, v in tool_calls["metrics"].items() if v is not None})
    headline["eval_loss"] = loss
    headline["perplexity"] = M.perplexity(loss)
    if probe is not None:
        headline["probe_score"] = probe["probe_score"]
    row_values = dict(scores.rows)
    row_values["loss"] = [list(r) for r in loss_rows]
    if probe is not None:
        row_values["probe"] = [float(it["id"] in set(probe["passed"])) for it in probe_items]
    details = scores.details
    return {
        "version": RESULT_VERSION,
        "key": key,
        "id": mid,
        "label": model["label"],
        "kind": model["kind"],
        "path": model.get("path"),
        "step": model.get("step"),
        "few_shot": k,
        "task": task,
        "metrics": headline,
        "details": details,
        "probe": probe,
        "tool_calls": tool_calls,
        "max_new_tokens": max_new,
        "rows": row_values,
        "samples": [{"row": s.row, "input": s.input_text, "reference": s.reference, "output": o, "stopped": st,
                     "correct": M.sample_correct(task, o, s.reference)}
                    for s, o, st in zip(samples, outputs, stopped)],
        "timing": {"generate_s": round(gen_s, 2), "samples_per_s": round(len(samples) / gen_s, 3) if gen_s else None,
                   "loss_s": round(loss_s, 2), "probe_s": round(probe_s, 2), "batch_size": batch},
        "device": engine.device,
        "precision": engine.precision,
        "threads": _threads(),
        "created_at": time.time(),
    }


def _tool_calls(engine, spec: dict[str, Any], batch: int, progress) -> dict[str, Any] | None:
    """Call-name accuracy, argument exact match and JSON validity on the held-out rows that use tools
    (ftwizard.evaluation.toolcalls); None when no row does."""
    from ftwizard.evaluation import toolcalls

    samples = toolcalls.load_tool_samples(Path(spec["eval_file"]), spec.get("format", "auto"), spec.get("system_prompt"),
                                          spec.get("max_samples"))
    return toolcalls.evaluate(engine, samples, batch, progress) if samples else None


def _threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return os.cpu_count()
