"""`run_check`: everything that can be known about a run before its first step.

Order matters only for cost: the config-only rules first, then the tokenizer (no
weights), the data lint of both files with it, the memory/time estimate against the
target, and the rules that need those facts. A failure to gather one input (a missing
file, a model not on disk) becomes a finding and the rules that needed it are skipped
(listed in `report.skipped`), so the report is always complete about what it knows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ftwizard.config import EMBEDDED, RunConfig
from ftwizard.errors import UserError
from ftwizard.preflight import guardrails as g
from ftwizard.preflight.report import Report
from ftwizard.preflight.rules import ERROR, WARNING

DATA_MODES = ("lint", "cached", "skip")


class _NoTokenizer(Exception):
    def __init__(self, error: UserError):
        super().__init__(error.what)
        self.error = error


def _preserving_env(fn, *a, **kw):
    """Call fn without letting it change HF_* variables: `train` spawns the trainer with this
    process's environment, and loading a tokenizer offline must not make the trainer offline."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_NO_ADVISORY_WARNINGS")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        return fn(*a, **kw)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _file_problem(path: Path) -> str | None:
    """What makes a data file unreadable, through the loader's own check (never opens a pipe)."""
    from ftwizard.data.loading import check_readable, file_kind

    try:
        check_readable(Path(path))
        file_kind(Path(path))
    except UserError as e:
        return e.what
    return None


def run_check(cfg: RunConfig, gpu=None, budget_hours: float | None = None, budget_usd: float | None = None,
              *, data: str = "lint") -> Report:
    """Check a run config without loading model weights; returns a ranked `Report`.

    gpu: a GPU name from the table or a `GpuTarget` to judge against (planning); None uses
    the detected GPU, else the CPU. data: "lint" (lint the files; cached per file),
    "cached" (use a cached lint if there is one, else skip the data rules: for keystrokes),
    "skip" (hyperparameter and memory rules only)."""
    if data not in DATA_MODES:
        raise ValueError(f"data must be one of {DATA_MODES}")
    from ftwizard.preflight import inputs
    from ftwizard.preflight.template import chat_template

    t0 = time.perf_counter()
    report = Report()
    ctx = g.Context(cfg=cfg, report=report, budget_hours=budget_hours, budget_usd=budget_usd)
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    # 1. files
    ok_files = True
    for fld, path in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
        if path is None:
            continue
        problem = _file_problem(path)
        if problem:
            ok_files = False
            report.add(g.Finding("data.missing", ERROR, f"{fld} file not found: {path}" if problem == "file not found"
                                 else f"{fld} file {path}: {problem}", f"check {fld} in the config", field=fld,
                                 file=str(path)))
    t = lap("files", t0)

    # 2. target (GPU or CPU)
    ctx.target = inputs.resolve_target(cfg, gpu)  # an unknown --gpu name is a usage error (raised), not a finding
    t = lap("target", t)

    # 3. the data facts: lint with the tokenizer (no weights), loaded only on a cache miss
    if data != "skip" and ok_files:
        def get_tokenizer():
            if ctx.tokenizer is None:
                try:
                    ctx.tokenizer = _preserving_env(inputs.load_tokenizer, cfg.model.base, cfg.model.trust_remote_code,
                                                    template)
                except UserError as e:
                    raise _NoTokenizer(e) from None
                timings["tokenizer"] = round(time.perf_counter() - t, 3)
            return ctx.tokenizer

        template = inputs.template_choice(cfg)  # data.chat_template, as the trainer applies it
        from ftwizard.data.chat_templates import cache_key

        tok_key = (cfg.model.base, cfg.model.trust_remote_code) + ((cache_key(template),) if template else ())
        try:
            ctx.train = inputs.data_facts(Path(cfg.data.train), get_tokenizer, tok_key,
                                          system_prompt=cfg.data.system_prompt, eval_path=cfg.data.eval,
                                          role="train", cached_only=data == "cached",
                                          objective=cfg.training.objective)
            if cfg.data.eval is not None:
                ctx.eval = inputs.data_facts(Path(cfg.data.eval), get_tokenizer, tok_key,
                                             system_prompt=cfg.data.system_prompt, role="eval",
                                             cached_only=data == "cached", objective=cfg.training.objective)
        except _NoTokenizer as e:
            _model_unavailable(ctx, e.error)
        except UserError as e:
            report.add(g.Finding("data.missing", ERROR, f"data file cannot be read: {e.what}",
                                 e.fix or "check the file", file=e.where))
        if ctx.train is None and data == "cached" and not report.errors:
            report.skipped.append("data rules: no cached lint of the data yet (run the check with data='lint')")
        t = lap("data", t)
    elif data == "skip":
        report.skipped.append("data rules: skipped on request")
    else:
        report.skipped.append("data rules: a data file is missing")
    if ctx.train is not None:
        ctx.rows = ctx.train.valid_rows
    elif ok_files:  # no lint (skipped, not cached, or no tokenizer): count rows cheaply for the step rules
        from ftwizard.advice import count_examples

        counted = count_examples(cfg.data.train) if ok_files else None
        ctx.rows = counted[0] if counted else None

    # 4. plan and estimate
    from ftwizard.advice import training_plan

    if ctx.rows:
        ctx.plan = training_plan(cfg, ctx.rows)
    _estimate(ctx)
    t = lap("estimate", t)

    # 5. the rules
    for rule_fn in (g.device_and_precision, g.trackers, g.memory, g.budget, g.lint_findings, g.duplicates, g.imbalance, g.eos,
                    g.chat_markup, g.truncation,
                    g.too_few, g.eval_set, g.learning_rate, g.epochs, g.warmup, g.batch, g.steps, g.lora, g.clipping,
                    g.preference_data, g.preference_beta, g.kto, chat_template):
        rule_fn(ctx)
    lap("rules", t)

    report.train_lengths = list(ctx.train.lengths) if ctx.train is not None and ctx.train.lengths else None
    report.eval_lengths = list(ctx.eval.lengths) if ctx.eval is not None and ctx.eval.lengths else None
    report.facts = _facts(ctx, timings)
    _walltime(ctx, report)
    report.estimate = ctx.estimate.to_dict() if ctx.estimate is not None else None
    report.elapsed_s = time.perf_counter() - t0
    return report


def _walltime(ctx: g.Context, report: Report) -> None:
    """Wall time on this machine when its speed was measured (ftwizard.hardware.walltime); never fails a check."""
    if ctx.target is None or (ctx.target.kind == "gpu" and ctx.target.gpu is not None
                              and ctx.target.gpu.source != "detected"):
        return  # planning for another GPU: this machine's measurement says nothing about it
    try:
        from ftwizard.hardware.walltime import estimate_walltime

        wt = estimate_walltime(ctx.cfg, report.train_lengths, ctx.rows, eval_lengths=report.eval_lengths)
    except Exception:  # noqa: BLE001 - a missing model shape or an odd cache: no time, the rest stands
        wt = None
    if wt is not None:
        report.facts["walltime"] = {"seconds": round(wt.seconds, 1), "s_per_step": round(wt.s_per_step, 3),
                                    "steps": wt.steps, "text": wt.text, "device": wt.device,
                                    "measured_at": wt.calibration.get("measured_at"),
                                    "load_avg": wt.calibration.get("load_avg")}
    else:
        report.skipped.append("wall time: this machine's speed is not measured yet "
                              "(`python -m ftwizard.hardware.walltime CONFIG`, or the wizard's Train step)")


def _model_unavailable(ctx: g.Context, e: UserError) -> None:
    from ftwizard.models.resolve import is_offline

    base = ctx.cfg.model.base
    hub_id = base != EMBEDDED and base.count("/") == 1 and not Path(base).expanduser().exists()
    if hub_id and not is_offline():
        ctx.add("model.unavailable", WARNING, f"{base} is not in the local hub cache: the trainer will download it at "
                "start; token counts, the EOS check and the data lint were skipped", f"download it first "
                f"(`hf download {base}`) so the check can read its tokenizer", field="model.base")
    else:
        ctx.add("model.unavailable", ERROR, f"cannot read the base model's tokenizer: {e.what}",
                e.fix or "check model.base", field="model.base", file=e.where)
    ctx.report.skipped.append("data rules: no tokenizer")


def _estimate(ctx: g.Context) -> None:
    from ftwizard.hardware.estimate import estimate_for_config

    cfg, tgt = ctx.cfg, ctx.target
    lengths = ctx.train.lengths if ctx.train is not None and ctx.train.lengths else None
    overrides = {}
    if tgt is not None and tgt.kind == "cpu":
        overrides["precision"] = "fp32"  # the trainer trains in fp32 on the CPU
        overrides["device"] = "cpu"      # and no CUDA context: the same input `ftwizard estimate` builds
    elif cfg.training.precision == "auto" or tgt is None:
        pass
    if lengths is None and ctx.rows:
        overrides["rows"] = ctx.rows
    try:
        ctx.estimate = estimate_for_config(cfg, gpu=tgt.gpu if tgt is not None else None, lengths=lengths, **overrides)
        ctx.total_params = ctx.estimate.total_params
    except UserError as e:
        if not ctx.report.by_rule("model.unavailable"):
            ctx.add("model.unavailable", ERROR, f"cannot read the base model's shape: {e.what}", e.fix or "check model.base",
                    field="model.base")
        ctx.report.skipped.append("memory, time and cost: no model shape")


def _facts(ctx: g.Context, timings: dict) -> dict:
    cfg = ctx.cfg
    out = {
        "model": cfg.model.base, "method": cfg.model.method, "max_length": cfg.data.max_length,
        "target": ctx.target.to_dict() if ctx.target is not None else None,
        "train": _file_facts(ctx.train, cfg.data.max_length), "eval": _file_facts(ctx.eval, cfg.data.max_length),
        "rows": ctx.rows,
        "effective_batch": cfg.training.batch_size * cfg.training.gradient_accumulation,
        "steps": ctx.plan.steps if ctx.plan else None,
        "passes": ctx.plan.epochs if ctx.plan else None,
        "total_params": ctx.total_params,
        "timings_s": timings,
    }
    if ctx.estimate is not None:
        e = ctx.estimate
        out.update(peak_bytes=e.total_bytes, verdict=e.verdict, time_s=e.time_s, cost=e.cost)
    return out


def _file_facts(facts, max_length: int) -> dict | None:
    if facts is None:
        return None
    lengths = facts.lengths
    d = {"path": facts.path, "rows": facts.rows, "valid_rows": facts.valid_rows, "format": facts.lint.format,
         "lint_errors": facts.lint.error_count, "lint_s": round(facts.elapsed_s, 3), "cached": facts.cached}
    if lengths:
        xs = sorted(lengths)
        d["tokens"] = {"p50": xs[len(xs) // 2], "p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))],
                       "p99": xs[min(len(xs) - 1, int(0.99 * len(xs)))], "max": xs[-1], "total": sum(xs)}
        d["truncated_rows"] = sum(1 for x in xs if x > max_length)
    return d
