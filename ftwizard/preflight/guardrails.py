"""The guardrails: one function per concern, each adding findings to the report.

Every function reads the `Context` (config, data facts, plan, estimate, target) and
never loads model weights. Thresholds live beside their rule in `rules.py`; the numbers
here are those thresholds, named once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftwizard.config import RunConfig, default_learning_rate
from ftwizard.preflight.report import Finding, Report
from ftwizard.preflight.rules import ERROR, INFO, WARNING

# thresholds (see rules.py for their sources)
LORA_LR = (1e-4, 2e-4)          # guidance: LoRA 1e-4 to 2e-4
ALL_LR = (1e-5, 5e-4)           # guidance: 1e-5 to 5e-4
FULL_LR = (1e-5, 2e-5)          # guidance: full ~1e-5 to 2e-5
FULL_LR_WARN = 1e-4             # ftwizard: 5x the top of the full range
FULL_LR_LOW = 1e-6
LARGE_MODEL = 7e9               # guidance: "above 2e-4 often destabilises large models" (7B is the first "large" row)
MAX_PASSES = 3                  # guidance: epochs 1-3, beyond 3 usually memorises
WARMUP_TYPICAL = (0.03, 0.10)   # guidance: 3-10 %
WARMUP_MAX = 0.20               # issue 10 / ftwizard: twice the top of the guidance range
EFF_BATCH_TYPICAL = (16, 64)    # guidance: effective batch 16-64
EFF_BATCH_WARN = (8, 128)       # ftwizard: half / twice the guidance range
MIN_STEPS = 10
LORA_R = (4, 64, 128)           # guidance: rank 4-64, 32-128 for rich tasks
LORA_R_SMALL_DATA = 1000        # rows under which a rank above 64 mostly memorises
ALPHA_RATIO = (0.25, 4.0)       # ftwizard margin around guidance's alpha = r .. 2r
MAX_GRAD_NORM_WARN = 10.0       # guidance: ~0.3-1.0
TRUNC_WARN = 0.05               # issue 10: "more than a few percent"
TRUNC_ERROR = 0.50
EVAL_MIN_ROWS = 20
EVAL_SHARE = 0.10               # guidance: hold out 10-20 %
EVAL_SHARE_ROWS = 500           # above this many eval rows a smaller share is fine
MARKUP_ERROR = 0.50
DUP_WARN = 0.10                 # Hernandez et al. 2022: repeating data that is 10 % of training hurts (see rules.py)
DUP_ERROR = 2 / 3               # copies > 2/3: each distinct row passes > 3 times per epoch (guidance: > 3 memorises)
IMBALANCE_WARN = 0.80           # Google ML crash course: minority 1-20 % is "moderate" imbalance
IMBALANCE_ERROR = 0.99          # minority < 1 % is "extreme": answering the majority label scores >= 99 %
IMBALANCE_MIN_ROWS = 100        # fewer labelled rows cannot show a < 1 % minority


@dataclass
class Context:
    cfg: RunConfig
    report: Report
    target: Any = None                      # inputs.Target
    tokenizer: Any = None
    train: Any = None                       # inputs.DataFacts
    eval: Any = None
    estimate: Any = None                    # ftwizard.hardware.estimate.Estimate
    total_params: int | None = None
    rows: int | None = None                 # usable training rows
    plan: Any = None                        # advice.TrainingPlan
    budget_hours: float | None = None
    budget_usd: float | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, rule: str, severity: str, message: str, fix: str, **kw) -> Finding:
        return self.report.add(Finding(rule, severity, message, fix, **kw))


def _g(x: float) -> str:
    return f"{x:g}"


# ---- hyperparameters ------------------------------------------------------------------------
def learning_rate(ctx: Context) -> None:
    if ctx.cfg.training.objective != "sft":
        return preference_lr(ctx)  # SFT's ranges would call a good DPO rate "too low"
    lr, method = ctx.cfg.training.learning_rate, ctx.cfg.model.method
    field_ = "training.learning_rate"
    large = ctx.total_params is not None and ctx.total_params >= LARGE_MODEL
    size = f" on a {ctx.total_params / 1e9:.1f}B model" if ctx.total_params else ""
    if method in ("lora", "qlora"):
        good = LORA_LR[0] if large else LORA_LR[1]
        edit = {field_: good}
        if lr > ALL_LR[1]:
            ctx.add("lr.range", WARNING, f"learning rate {_g(lr)} is above {_g(ALL_LR[1])}, the top of the usual range; "
                    f"{'QLoRA' if method == 'qlora' else 'LoRA'} usually trains at 1e-4 to 2e-4",
                    f"set {field_}: {_g(good)}", field=field_, edit=edit)
        elif lr > LORA_LR[1] and large:
            ctx.add("lr.range", WARNING, f"learning rate {_g(lr)}{size}: above 2e-4 often destabilises large models",
                    f"set {field_}: {_g(good)}", field=field_, edit=edit)
        elif lr < ALL_LR[0]:
            ctx.add("lr.range", WARNING, f"learning rate {_g(lr)} is below {_g(ALL_LR[0])}: adapters barely move "
                    "(LoRA usually trains at 1e-4 to 2e-4)", f"set {field_}: {_g(good)}", field=field_, edit=edit)
        elif not LORA_LR[0] <= lr <= LORA_LR[1]:
            ctx.add("lr.range", INFO, f"learning rate {_g(lr)} is outside LoRA's usual 1e-4 to 2e-4 (within the general "
                    "1e-5 to 5e-4)", "fine for a first try; watch the loss curve", field=field_)
    else:
        edit = {field_: FULL_LR[1]}
        if lr > FULL_LR_WARN:
            ctx.add("lr.range", WARNING, f"learning rate {_g(lr)} for full fine-tuning{size}: full fine-tuning usually "
                    f"trains at ~1e-5 to 2e-5, and far higher rates wreck the base model's abilities",
                    f"set {field_}: {_g(FULL_LR[1])}", field=field_, edit=edit)
        elif lr < FULL_LR_LOW:
            ctx.add("lr.range", WARNING, f"learning rate {_g(lr)} is too low to change the model in a normal run",
                    f"set {field_}: {_g(FULL_LR[1])}", field=field_, edit=edit)
        elif lr > FULL_LR[1]:
            ctx.add("lr.range", INFO, f"learning rate {_g(lr)} is above full fine-tuning's usual ~1e-5 to 2e-5",
                    "fine on small models; on large ones lower it", field=field_)


def epochs(ctx: Context) -> None:
    plan, t = ctx.plan, ctx.cfg.training
    if plan is None or not ctx.rows:
        return
    passes = plan.epochs
    if passes <= MAX_PASSES:
        return
    eff = plan.effective_batch
    if t.max_steps is not None:
        how = f"max_steps {t.max_steps} x effective batch {eff} over {ctx.rows:,} rows = {passes:g} passes"
        new_steps = max(1, math.floor(MAX_PASSES * ctx.rows / eff))
        edit, fix = {"training.max_steps": new_steps}, f"set training.max_steps: {new_steps} (3 passes), or add data"
    else:
        how = f"{passes:g} epochs over {ctx.rows:,} rows"
        edit, fix = {"training.epochs": float(MAX_PASSES)}, "set training.epochs: 3 (or fewer), or add data"
    small = " on a small data set" if ctx.rows < 1000 else ""
    ctx.add("epochs.too_many", WARNING, f"{how}: more than {MAX_PASSES} passes{small} usually memorises the training "
            "rows (eval loss rises while train loss falls)", fix, field="training.max_steps" if t.max_steps else
            "training.epochs", edit=edit)


def warmup(ctx: Context) -> None:
    w = ctx.cfg.training.warmup_ratio
    f = "training.warmup_ratio"
    if w == 0:
        ctx.add("warmup.none", WARNING, "no learning-rate warmup: the first steps apply the full learning rate to a "
                "fresh optimizer state", f"set {f}: 0.05 (guidance: 3-10 % of steps)", field=f, edit={f: 0.05})
    elif w > WARMUP_MAX:
        ctx.add("warmup.too_long", WARNING, f"warmup is {w:.0%} of the steps; the usual is 3-10 %",
                f"set {f}: 0.05", field=f, edit={f: 0.05})
    elif not WARMUP_TYPICAL[0] <= w <= WARMUP_TYPICAL[1]:
        ctx.add("warmup.too_long" if w > WARMUP_TYPICAL[1] else "warmup.none", INFO,
                f"warmup is {w:.0%} of the steps; the usual is 3-10 %", "fine; 0.05 is the default", field=f)


def batch(ctx: Context) -> None:
    t = ctx.cfg.training
    eff = t.batch_size * t.gradient_accumulation
    if EFF_BATCH_WARN[0] <= eff <= EFF_BATCH_WARN[1]:
        if not EFF_BATCH_TYPICAL[0] <= eff <= EFF_BATCH_TYPICAL[1]:
            ctx.add("batch.effective", INFO, f"effective batch {eff} (batch {t.batch_size} x accumulation "
                    f"{t.gradient_accumulation}); 16-64 is typical", "fine", field="training.gradient_accumulation")
        return
    if eff < EFF_BATCH_WARN[0]:
        accum = max(1, math.ceil(EFF_BATCH_TYPICAL[0] / t.batch_size))
        edit = {"training.gradient_accumulation": accum}
        fix = f"set training.gradient_accumulation: {accum} (effective batch {accum * t.batch_size}; same memory)"
        why = "single updates from so few rows are noisy"
    else:
        if t.batch_size <= EFF_BATCH_TYPICAL[1]:
            edit = {"training.gradient_accumulation": max(1, EFF_BATCH_TYPICAL[1] // t.batch_size)}
        else:
            edit = {"training.batch_size": EFF_BATCH_TYPICAL[1], "training.gradient_accumulation": 1}
        fix = "lower it to 64 or less: " + ", ".join(f"{k}: {v}" for k, v in edit.items())
        why = "each update averages so many rows that the run gets few optimizer steps"
    ctx.add("batch.effective", WARNING, f"effective batch {eff} (batch {t.batch_size} x accumulation "
            f"{t.gradient_accumulation}) is far from the usual 16-64: {why}", fix,
            field="training.gradient_accumulation", edit=edit)


def steps(ctx: Context) -> None:
    plan, t = ctx.plan, ctx.cfg.training
    if plan is None or plan.steps is None or t.max_steps is not None or plan.steps >= MIN_STEPS:
        return
    edit = None
    want_eff = math.floor(ctx.rows * t.epochs / MIN_STEPS) if ctx.rows else 0
    accum = want_eff // t.batch_size
    if accum >= 1 and accum < t.gradient_accumulation:
        edit = {"training.gradient_accumulation": accum}
        fix = f"set training.gradient_accumulation: {accum} (about {MIN_STEPS} steps), or add data"
    else:
        fix = "add data, or lower the batch size and accumulation"
    ctx.add("steps.too_few", WARNING, f"the whole run is {plan.steps} optimizer step(s) ({ctx.rows:,} rows, effective "
            f"batch {plan.effective_batch}, {t.epochs:g} epochs): too few for warmup and decay to act",
            fix, field="training.gradient_accumulation", edit=edit)


def lora(ctx: Context) -> None:
    if ctx.cfg.model.method not in ("lora", "qlora"):
        return
    r, alpha = ctx.cfg.lora.r, ctx.cfg.lora.alpha
    rows = ctx.rows
    edit = {"lora.r": 16, "lora.alpha": 32}
    if r < LORA_R[0]:
        ctx.add("lora.rank", WARNING, f"LoRA rank {r} is below 4: too little capacity for most tasks",
                "set lora.r: 16 and lora.alpha: 32 (guidance: 8-16 to start)", field="lora.r", edit=edit)
    elif r > LORA_R[2]:
        ctx.add("lora.rank", WARNING, f"LoRA rank {r} is above 128, the top of the guidance's range",
                "set lora.r: 16 and lora.alpha: 32 (32-128 only for rich instruction tasks with much data)",
                field="lora.r", edit=edit)
    elif r > LORA_R[1] and rows is not None and rows < LORA_R_SMALL_DATA:
        ctx.add("lora.rank", WARNING, f"LoRA rank {r} on {rows:,} rows: a rank above 64 on little data mostly adds "
                "capacity to memorise", "set lora.r: 16 and lora.alpha: 32", field="lora.r", edit=edit)
    ratio = alpha / r
    if not ALPHA_RATIO[0] <= ratio <= ALPHA_RATIO[1]:
        ctx.add("lora.alpha", WARNING, f"lora.alpha {alpha} is {ratio:g} x the rank {r}: the adapter's updates are "
                f"scaled {'up' if ratio > 1 else 'down'} as if the learning rate were {ratio / 2:g} x",
                f"set lora.alpha: {2 * r} (2 x r)", field="lora.alpha", edit={"lora.alpha": 2 * r})


def clipping(ctx: Context) -> None:
    n = ctx.cfg.training.max_grad_norm
    if n > MAX_GRAD_NORM_WARN:
        ctx.add("clip.max_grad_norm", WARNING, f"max_grad_norm {n:g} never clips in practice",
                "set training.max_grad_norm: 1.0", field="training.max_grad_norm",
                edit={"training.max_grad_norm": 1.0})


# ---- device, precision, memory, budget -------------------------------------------------------
def device_and_precision(ctx: Context) -> None:
    t, tgt = ctx.cfg.training, ctx.target
    if tgt is None:
        return
    if tgt.kind == "none":
        ctx.add("device.no_gpu", ERROR, f"training.device is cuda but there is no GPU here ({tgt.note})",
                "set training.device: auto (trains on the CPU), or run on a GPU machine (check with `ftwizard gpus`)",
                field="training.device", edit={"training.device": "auto"})
        return
    if tgt.kind == "cpu" and t.precision in ("bf16", "fp16"):
        ctx.add("precision.needs_gpu", ERROR, f"training.precision is {t.precision}, but this run trains on the CPU "
                f"({tgt.note})", "set training.precision: auto (fp32 on the CPU, bf16/fp16 on a GPU)",
                field="training.precision", edit={"training.precision": "auto"})
    if tgt.kind == "gpu" and t.precision == "bf16" and not tgt.gpu.supports_bf16:
        ctx.add("precision.bf16_unsupported", ERROR, f"training.precision is bf16, but the {tgt.gpu.name} has no bf16 "
                "(compute capability below 8.0)", "set training.precision: fp16 (or auto, which picks it)",
                field="training.precision", edit={"training.precision": "fp16"})


def trackers(ctx: Context) -> None:
    """training.report_to names a tracker whose package is missing (h15: ftwizard.tracking)."""
    from ftwizard.tracking import install_hint, missing_trackers, online_problems

    for problem in online_problems(ctx.cfg):
        ctx.add("tracking.no_login", WARNING, problem,
                "run `wandb login` (or set WANDB_API_KEY) before starting, or set training.tracking_mode: offline "
                "and upload later with `wandb sync`", field="training.tracking_mode",
                edit={"training.tracking_mode": "offline"})
    missing = missing_trackers(ctx.cfg)
    if missing:
        names = ", ".join(n for n, _ in missing)
        ctx.add("tracking.missing", ERROR, f"training.report_to names {names}, which is not installed here",
                f"{install_hint(missing)}; or remove it from training.report_to",
                field="training.report_to",
                edit={"training.report_to": [n for n in ctx.cfg.training.report_to if n not in dict(missing)]})


_ADVICE_FIELDS = {
    "gradient_checkpointing": "training.gradient_checkpointing",
    "micro_batch": "training.batch_size",
    "grad_accum": "training.gradient_accumulation",
    "method": "model.method",
    "max_length": "data.max_length",
}
_OPTIMIZER_NAMES = {"adamw": "adamw_torch", "adamw8bit": "adamw_8bit", "paged_adamw8bit": "paged_adamw_8bit",
                    "paged_adamw32bit": "paged_adamw_32bit", "sgd": "sgd"}


def advice_edit(advice: dict) -> dict | None:
    """The config edit for one estimate advice line, or None when it is not a config change (GPUs, model)."""
    edit = {}
    for k, v in advice.get("settings", {}).items():
        if k == "optimizer":
            edit["training.optimizer"] = _OPTIMIZER_NAMES[v]
        elif k in _ADVICE_FIELDS:
            edit[_ADVICE_FIELDS[k]] = v
        else:
            return None
    return edit or None


def _gib(n: int | float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def memory(ctx: Context) -> None:
    est, tgt = ctx.estimate, ctx.target
    if est is None or tgt is None or tgt.gpu is None:
        return
    where = "this machine's RAM" if tgt.kind == "cpu" else f"the {tgt.gpu.name}"
    big = sorted(est.parts.items(), key=lambda kv: -kv[1])[:2]
    parts = ", ".join(f"{k.replace('_', ' ')} {_gib(v)}" for k, v in big)
    if est.verdict == "does_not_fit":
        advice = est.advice or []
        best = next((a for a in advice if a["verdict"] == "fits" and advice_edit(a)), None) \
            or next((a for a in advice if advice_edit(a)), None)
        fix = (f"{best['change']} (about {_gib(best['total_bytes'])}, {best['verdict'].replace('_', ' ')})"
               if best else "use a GPU with more memory or a smaller base model")
        ranked = "; ".join(f"{i + 1}. {a['change']} -> {_gib(a['total_bytes'])} ({a['verdict'].replace('_', ' ')})"
                           for i, a in enumerate(advice[:5]))
        ctx.add("memory.does_not_fit", ERROR,
                f"estimated peak {_gib(est.total_bytes)} is more than {where} ({_gib(tgt.gpu.memory_bytes)}); largest "
                f"parts: {parts}" + (f". Fixes, best first: {ranked}" if ranked else ""),
                fix, field=None, edit=advice_edit(best) if best else None, advice=advice)
    elif est.verdict == "tight" and not ctx.cfg.training.gradient_checkpointing:
        ctx.add("memory.checkpointing_off", WARNING,
                f"estimated peak {_gib(est.total_bytes)} is {est.total_bytes / tgt.gpu.memory_bytes:.0%} of {where} "
                f"({_gib(tgt.gpu.memory_bytes)}) with gradient checkpointing off",
                "set training.gradient_checkpointing: true (about 30 % slower, same result)",
                field="training.gradient_checkpointing", edit={"training.gradient_checkpointing": True})


def _hours(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"


def budget(ctx: Context) -> None:
    est = ctx.estimate
    if ctx.budget_hours is None and ctx.budget_usd is None:
        return
    if est is None or est.time_s is None:
        ctx.report.skipped.append("budget: no time estimate for this target (the GPU's throughput is unknown, "
                                  "or the run is on the CPU)")
        return
    t = ctx.cfg.training
    if ctx.budget_hours is not None and est.time_s > ctx.budget_hours * 3600:
        scale = ctx.budget_hours * 3600 / est.time_s
        ctx.add("budget.time", ERROR, f"estimated training time {_hours(est.time_s)} on the {est.gpu.name} is over the "
                f"budget of {ctx.budget_hours:g} h", f"cut the work to {scale:.0%}: fewer epochs (now {t.epochs:g}) or "
                "a shorter data.max_length, or a faster GPU (`ftwizard estimate --list-gpus`)", field="training.epochs")
    if ctx.budget_usd is not None:
        if est.cost is None:
            ctx.report.skipped.append(f"budget: no price per hour for the {est.gpu.name} (set it in the GPU table)")
        elif est.cost > ctx.budget_usd:
            ctx.add("budget.cost", ERROR, f"estimated cost ${est.cost:,.2f} ({_hours(est.time_s)} at "
                    f"${est.price_per_hour:g}/h) is over the budget of ${ctx.budget_usd:,.2f}",
                    "fewer epochs, a shorter data.max_length, or a cheaper GPU", field="training.epochs")


# ---- data -------------------------------------------------------------------------------------
def too_few(ctx: Context) -> None:
    if ctx.train is None or ctx.rows is None or ctx.train.lint.format in (None, "preference"):
        return
    from ftwizard.data.guidance import GENERIC_MINIMUM, rate_count

    task = ctx.cfg.data.task_type
    rating, counts = rate_count(None if task == "other" else task, ctx.rows)
    if counts is None:
        if rating == "below_minimum":
            ctx.add("data.too_few", WARNING, f"{ctx.rows:,} usable training rows; fewer than a few hundred good examples "
                    f"rarely teach a behaviour (guidance: at least ~{GENERIC_MINIMUM})",
                    "collect more examples, or set data.task_type for the per-task table; run a pilot meanwhile",
                    field="data.train", file=ctx.train.path, count=ctx.rows)
        return
    table = f"{counts.label}: minimum {counts.minimum:,}, good {counts.good:,}, excellent {counts.excellent:,}+"
    if rating == "below_minimum":
        ctx.add("data.too_few", WARNING, f"{ctx.rows:,} usable training rows, below the minimum for "
                f"{counts.label.lower()} ({table})", f"collect at least {counts.minimum:,} examples",
                field="data.train", file=ctx.train.path, count=ctx.rows)
    elif rating == "minimum":
        ctx.add("data.too_few", INFO, f"{ctx.rows:,} usable rows: enough to start, below good ({table})",
                f"{counts.good:,} would be good", field="data.train", file=ctx.train.path, count=ctx.rows)


def truncation(ctx: Context) -> None:
    if ctx.train is None or not ctx.train.lengths:
        return
    import numpy as np

    lengths = np.asarray(ctx.train.lengths)
    limit = ctx.cfg.data.max_length
    over = int((lengths > limit).sum())
    if not over:
        return
    share = over / len(lengths)
    p99 = int(np.percentile(lengths, 99))
    target = min(131072, max(64, math.ceil(max(p99, 1) / 64) * 64))
    edit = {"data.max_length": target} if target > limit else None
    answer_cut = ctx.cfg.data.assistant_only_loss and ctx.train.lint.format not in ("text", None)
    sev = INFO
    if share > TRUNC_WARN:
        sev = WARNING
    if share >= TRUNC_ERROR and answer_cut:
        sev = ERROR
    rows = _rows_over(ctx.train, limit)
    ctx.add("data.truncation", sev, f"{over:,} of {len(lengths):,} rows ({share:.1%}) are longer than data.max_length "
            f"{limit} tokens (p99 {p99}, longest {int(lengths.max())}); their ends"
            + (", the answers the loss trains on," if answer_cut else "") + " are cut off",
            f"set data.max_length: {target} (covers 99 % of rows)" if edit else "shorten or drop the longest rows",
            field="data.max_length", file=ctx.train.path, rows=rows, count=over, edit=edit)


def _rows_over(facts, limit: int) -> list[int] | None:
    rows = []
    # the lint ran without a max length; map lengths back to rows through its per-row order
    row_numbers = getattr(facts, "row_numbers", None)
    if row_numbers:
        rows = [r for r, n in zip(row_numbers, facts.lengths) if n > limit][:20]
    return rows or None


def eos(ctx: Context) -> None:
    for facts in (ctx.train, ctx.eval):
        if facts is None:
            continue
        for f in facts.lint.findings:
            if f.rule == "template.no_eos":
                ctx.add("data.eos", ERROR, f.message, "use a base model whose chat template closes assistant turns with "
                        "its eos token (an instruct model), or fix the template", field="model.base", file=facts.path,
                        rows=[f.row] + (f.related or []) if f.row else None)
                return
    if ctx.train is not None and ctx.train.eos_token is None:
        ctx.add("data.eos", ERROR, "the tokenizer has no eos token: the model has no way to learn where an answer ends",
                "use a base model whose tokenizer defines an eos token", field="model.base")


def chat_markup(ctx: Context) -> None:
    from ftwizard.preflight.markup import FAMILY_OF, own_family

    for facts in (ctx.train, ctx.eval):
        if facts is None or not facts.markup.count:
            continue
        own = own_family(facts.chat_template)
        scan = facts.markup
        fams = sorted({FAMILY_OF[m] for m in scan.markers})
        foreign = [f for f in fams if f != own]
        markers = ", ".join(m for m, _ in scan.markers.most_common(4))
        share = scan.count / max(facts.valid_rows or facts.rows, 1)
        sev = ERROR if share >= MARKUP_ERROR else WARNING
        if foreign:
            what = (f"{markers} ({' / '.join(foreign)} chat markup) while this model's template is "
                    f"{own or 'a different one'}")
        else:
            what = f"{markers}, this model's own template markup, which the template already adds around each turn"
        ctx.add("data.chat_markup", sev, f"{scan.count:,} row(s) ({share:.0%}) carry {what}; first in "
                f"{scan.first_field}", "store plain message text: remove the markup from the rows "
                "(keep each turn's text in its own message), then lint again", file=facts.path,
                rows=scan.rows[:20], count=scan.count, field="data.eval" if facts is ctx.eval else "data.train")


def eval_set(ctx: Context) -> None:
    cfg = ctx.cfg
    if cfg.data.eval is None:
        ctx.add("eval.missing", WARNING, "no eval file: over-fitting will be invisible during training",
                f"hold out 10-20 %: `ftwizard data split {cfg.data.train}` writes train and eval files; set data.eval",
                field="data.eval")
        return
    if ctx.eval is None or ctx.train is None:
        return
    n, total = ctx.eval.valid_rows, ctx.eval.valid_rows + ctx.train.valid_rows
    share = n / total if total else 0
    if n < EVAL_MIN_ROWS or (share < EVAL_SHARE and n < EVAL_SHARE_ROWS):
        ctx.add("eval.too_small", WARNING, f"{n:,} eval rows ({share:.0%} of the data): too few for a stable eval loss",
                f"hold out 10-20 % and at least {EVAL_MIN_ROWS} rows (`ftwizard data split`)", field="data.eval",
                file=ctx.eval.path, count=n)
    from pathlib import Path

    same = Path(cfg.data.eval).resolve() == Path(cfg.data.train).resolve()
    hits = [f for f in ctx.train.lint.findings if f.rule == "eval.overlap"]
    count = ctx.eval.valid_rows if same else ctx.train.lint.counts.get("eval.overlap", 0)
    if not count:
        return
    share_o = count / max(n, 1)
    first = f"; first: {hits[0].message}" if hits and not same else ""
    ctx.add("eval.overlap", WARNING, ("the eval file is the training file" if same else
            f"{count:,} of {n:,} eval rows ({share_o:.0%}) also occur in the training data{first}"),
            "remove the overlapping rows from one side (`ftwizard data split` keeps duplicates on one side)",
            field="data.eval", file=str(cfg.data.eval), rows=[f.row for f in hits[:20] if f.row] or None, count=count)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if x >= 0.1 else f"{100 * x:.1f} %"


def duplicates(ctx: Context) -> None:
    """Copies in the training file (exact, and near-duplicates of an earlier row) as a share of its rows.

    Mild: info. At DUP_WARN a warning: repeated data degrades what a model learns from the rest
    (Hernandez et al. 2022). Above DUP_ERROR an error: each distinct row is then trained on more
    than 3 times per epoch, past the guidance's memorisation limit whatever the epochs."""
    facts = ctx.train
    if facts is None or not facts.valid_rows:
        return
    counts = facts.lint.counts
    exact, near = counts.get("dup.exact", 0), counts.get("dup.near", 0)
    copies = exact + near
    if not copies:
        return
    share = copies / facts.valid_rows
    rows = sorted({f.row for f in facts.lint.findings if f.rule in ("dup.exact", "dup.near") and f.row})[:20] or None
    kinds = ", ".join(x for x in (f"{exact:,} exact" if exact else "", f"{near:,} near" if near else "") if x)
    distinct = facts.valid_rows - copies
    msg = (f"{copies:,} of {facts.valid_rows:,} training rows ({_pct(share)}) repeat an earlier row ({kinds}); "
           f"{distinct:,} distinct rows")
    fix = f"remove them: `ftwizard data fix {facts.path} --dedup near -o deduped.jsonl`, then set data.train to it"
    if share > DUP_ERROR:
        sev = ERROR
        msg += f": each distinct row is trained on {facts.valid_rows / max(distinct, 1):.1f} times per epoch, which " \
               "memorises them"
    elif share >= DUP_WARN:
        sev = WARNING
        msg += ": repeated rows weigh more than the rest and are memorised"
    else:
        sev = INFO
        fix = f"fine at this share; `ftwizard lint {facts.path}` lists them"
    ctx.add("data.duplicates", sev, msg, fix, field="data.train", file=facts.path, rows=rows, count=copies)


def imbalance(ctx: Context) -> None:
    """A label (the whole assistant answer, or a JSON field) dominated by one class.

    The share of the most common class decides: up to IMBALANCE_WARN it is info (when the lint
    found the rarest class 10x rarer than the top); above, the other classes together are a
    "moderate" minority (< 20 %) and a warning; at IMBALANCE_ERROR (minority < 1 %, "extreme")
    answering the majority class scores >= 99 % on the training loss's own terms, so the model
    learns to ignore the input: an error."""
    facts = ctx.train
    if facts is None:
        return
    lint_rows = {f.row for f in facts.lint.findings if f.rule == "labels.imbalance" and f.row}
    for group in (facts.lint.stats or {}).get("labels") or []:
        counts = group.get("counts") or {}
        total = sum(counts.values())
        if len(counts) < 2 or total < 20:
            continue
        top, top_n = max(counts.items(), key=lambda kv: kv[1])
        low, low_n = min(counts.items(), key=lambda kv: kv[1])
        share = top_n / total
        dist = ", ".join(f"{k!r} {n:,}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
        what = group.get("what", "label")
        msg = f"{what}: {top!r} is {_pct(share)} of {total:,} rows ({dist}{' ...' if len(counts) > 6 else ''})"
        fix = f"add examples of the rare classes (or downsample {top!r}) so that no class has more than " \
              f"{_pct(IMBALANCE_WARN)} of the rows"
        if share >= IMBALANCE_ERROR and total >= IMBALANCE_MIN_ROWS:
            sev = ERROR
            msg += f": answering {top!r} every time is right {_pct(share)} of the time, so the model learns to " \
                   "ignore the input"
        elif share > IMBALANCE_WARN:
            sev = WARNING
            msg += f": the model leans to {top!r} and rarely predicts the other classes"
        elif top_n / max(low_n, 1) >= 10:
            sev = INFO
            fix = f"watch per-class scores for {low!r} in the evaluation"
        else:
            continue
        ctx.add("data.imbalance", sev, msg, fix, field="data.train", file=facts.path,
                rows=sorted(lint_rows)[:20] or None, count=top_n)


# lint rules whose findings the guardrails above already report, with the run's own thresholds
ABSORBED = {"length.over_max", "eval.overlap", "template.no_eos", "data.too_few", "tokens.skipped"}
ABSORBED_TRAIN = {"dup.exact", "dup.near", "labels.imbalance",  # duplicates() and imbalance() judge these
                  "pref.kto_balance"}  # kto() judges the balance with the configured weights


def lint_findings(ctx: Context) -> None:
    """The data lint's findings: its errors stay errors (the trainer cannot read those rows); its
    warnings are summarised as info, one line per rule (the full list is `ftwizard lint`)."""
    from ftwizard.data.rules import ERROR as LINT_ERROR

    for facts, side in ((ctx.train, "data.train"), (ctx.eval, "data.eval")):
        if facts is None:
            continue
        skip = set(ABSORBED) | (ABSORBED_TRAIN if side == "data.train" else set())
        if facts.markup.count:
            skip.add("content.special_token")
        by_rule: dict[str, list] = {}
        for f in facts.lint.findings:
            if f.rule not in skip and not f.file:
                by_rule.setdefault(f.rule, []).append(f)
        for rule_id, n in facts.lint.counts.items():
            if rule_id in skip or rule_id not in by_rule:
                continue
            fs = by_rule[rule_id]
            first = fs[0]
            is_error = any(f.severity == LINT_ERROR for f in fs)
            rows = sorted({f.row for f in fs if f.row})[:20] or None
            where = f"row {first.row}: " if first.row else ""
            more = f" ({n:,} findings)" if n > 1 else ""
            ctx.add(f"lint.{rule_id}", ERROR if is_error else INFO, f"{where}{first.message}{more}",
                    first.hint + (f"; every finding: `ftwizard lint {facts.path}`" if n > 1 else ""),
                    field=side if not first.field else f"{side} {first.field}", file=facts.path, rows=rows, count=n)


# ---- preference objectives (DPO, ORPO, KTO) ---------------------------------------------------------
# The typical ranges and factors live in ftwizard.preference_guidance (one home, with their sources).
PREFERENCE_FORMATS = ("preference", "kto")


def preference_lr(ctx: Context) -> None:
    """A learning rate far above the objective's typical range (an SFT rate, usually) wrecks a preference run: the
    policy leaves the reference in a few steps and both answers' rewards collapse. Warning above 3x the typical top,
    error at 20x or more; a warning below a tenth of the bottom (the run barely moves)."""
    from ftwizard import preference_guidance as pg

    t, method = ctx.cfg.training, ctx.cfg.model.method
    g = pg.guide(t.objective)
    low, high = g.lr_range(method)
    lr, f = t.learning_rate, "training.learning_rate"
    good = default_learning_rate(t.objective, method)
    name = t.objective.upper()
    how = "full fine-tuning" if method == "full" else ("QLoRA" if method == "qlora" else "LoRA")
    usual = f"{name} with {how} usually trains at {_g(low)} to {_g(high)}"
    ratio = lr / high
    eps = 1e-9  # 5e-5 * 20 is 1.0000000000000002e-3 in floats: compare ratios with a hair of slack
    if ratio >= pg.LR_ERROR_FACTOR - eps:
        ctx.add("pref.lr", ERROR, f"learning rate {_g(lr)} is {lr / high:.0f}x the top of the usual range: {usual} "
                f"(an order or two below SFT); at this rate the model leaves the reference within a few steps and "
                "degenerates", f"set {f}: {_g(good)}", field=f, edit={f: good})
    elif ratio > pg.LR_WARN_FACTOR + eps:
        ctx.add("pref.lr", WARNING, f"learning rate {_g(lr)} is {lr / high:.1f}x the top of the usual range: {usual}; "
                "preference objectives train 10-100x below SFT", f"set {f}: {_g(good)}", field=f, edit={f: good})
    elif lr / low < pg.LR_LOW_FACTOR - eps:
        ctx.add("pref.lr", WARNING, f"learning rate {_g(lr)} is below a tenth of the usual range ({usual}): the "
                "rewards will barely move", f"set {f}: {_g(good)}", field=f, edit={f: good})
    elif not low <= lr <= high:
        ctx.add("pref.lr", INFO, f"learning rate {_g(lr)} is outside the usual range ({usual})",
                "fine for a first try; watch the reward margins", field=f)


def preference_beta(ctx: Context) -> None:
    """beta (ORPO: lambda) outside the range the papers and TRL use."""
    from ftwizard import preference_guidance as pg

    t, p = ctx.cfg.training, ctx.cfg.preference
    if t.objective == "sft":
        return
    g = pg.guide(t.objective)
    low, high = g.beta_range
    f = "preference.beta"
    what = "lambda (the weight of the odds-ratio term)" if t.objective == "orpo" else "beta"
    if p.beta < low:
        why = ("the preference term barely counts; the run is plain SFT" if t.objective == "orpo" else
               "almost nothing holds the model near the reference: it drifts and can degenerate")
        ctx.add("pref.beta", WARNING, f"{t.objective.upper()} {what} {_g(p.beta)} is below {_g(low)}: {why}",
                f"set {f}: {_g(g.beta)} (the papers' default)", field=f, edit={f: g.beta})
    elif p.beta > high:
        why = ("the preference term outweighs the SFT term" if t.objective == "orpo" else
               "the model is held so close to the reference that it hardly learns the preference")
        ctx.add("pref.beta", WARNING, f"{t.objective.upper()} {what} {_g(p.beta)} is above {_g(high)}: {why}",
                f"set {f}: {_g(g.beta)} (the papers' default)", field=f, edit={f: g.beta})


def _data_format(ctx: Context, facts, path) -> str | None:
    """The data file's format: the lint's when it ran, else the first row's (cheap)."""
    if facts is not None and getattr(facts.lint, "format", None):
        return facts.lint.format
    try:
        from ftwizard.data.formats import detect_format
        from ftwizard.data.loading import iter_records

        for rec in iter_records(path):
            if rec.value is not None:
                return detect_format(rec.value)
    except Exception:  # noqa: BLE001 - an unreadable file is data.missing's finding
        return None
    return None


def preference_data(ctx: Context) -> None:
    """A preference objective needs preference data (SFT on preference data is the lint's format.preference)."""
    t = ctx.cfg.training
    if t.objective == "sft" or not ctx.cfg.data.train:
        return
    for facts, side, path in ((ctx.train, "data.train", ctx.cfg.data.train), (ctx.eval, "data.eval", ctx.cfg.data.eval)):
        if path is None or not Path(path).is_file():
            continue
        fmt = _data_format(ctx, facts, path)
        if fmt is None or fmt in PREFERENCE_FORMATS:
            continue
        ctx.add("pref.data", ERROR, f"training.objective is {t.objective} but {side} holds {fmt} rows, not preference "
                f"data: {t.objective.upper()} learns from {'labelled answers or pairs' if t.objective == 'kto' else 'pairs'} "
                "(prompt/chosen/rejected" + (", or prompt/completion/label" if t.objective == "kto" else "") + ")",
                "set training.objective: sft for this data, or point the data at a preference file",
                field=side, file=str(path), edit={"training.objective": "sft"})


def _kto_counts(ctx: Context) -> tuple[int, int] | None:
    """(desirable, undesirable) rows of the training file: from the lint's stats when it has them, else counted
    (a pair counts once on each side)."""
    facts = ctx.train
    stats = (getattr(facts.lint, "stats", None) or {}).get("preference") if facts is not None else None
    if stats and stats.get("desirable") is not None and stats.get("undesirable") is not None:
        return int(stats["desirable"]), int(stats["undesirable"])
    try:
        from ftwizard.data.formats import _kto_label, detect_format
        from ftwizard.data.loading import iter_records

        good = bad = 0
        for rec in iter_records(Path(ctx.cfg.data.train)):
            fmt = detect_format(rec.value) if rec.value is not None else None
            if fmt == "preference":
                good, bad = good + 1, bad + 1
            elif fmt == "kto":
                if _kto_label(rec.value["label"]):
                    good += 1
                else:
                    bad += 1
        return (good, bad) if good or bad else None
    except Exception:  # noqa: BLE001 - an unreadable file is data.missing's finding
        return None


def kto(ctx: Context) -> None:
    """KTO's own limits: a micro-batch of 2+ (its KL term pairs each answer with another prompt's in the batch;
    TRL refuses 1), and the weighted balance of desirable to undesirable answers (KTO paper: [1, 4/3])."""
    from ftwizard import preference_guidance as pg

    cfg = ctx.cfg
    if cfg.training.objective != "kto":
        return
    if cfg.training.batch_size < 2:
        ctx.add("pref.kto_batch", ERROR, f"KTO with training.batch_size {cfg.training.batch_size}: its KL estimate "
                "pairs each answer with another prompt's in the same micro-batch, so it needs 2 or more",
                "set training.batch_size: 2 (or more)", field="training.batch_size", edit={"training.batch_size": 2})
    counts = _kto_counts(ctx)
    if not counts:
        return
    good, bad = counts
    p = cfg.preference
    if good == 0 or bad == 0:
        ctx.add("pref.kto_balance", WARNING, f"the KTO data has {good:,} desirable and {bad:,} undesirable answers: "
                "with only one kind, KTO cannot contrast them", "add answers of the missing kind (or use SFT on the "
                "good ones)", field="data.train", file=str(cfg.data.train))
        return
    ratio = p.desirable_weight * good / (p.undesirable_weight * bad)
    lo, hi = pg.KTO_WEIGHT_RATIO
    if lo <= ratio <= hi:
        return
    # the desirable weight that brings the ratio to the middle of [1, 4/3], keeping undesirable_weight
    want = round(p.undesirable_weight * bad * (lo + hi) / 2 / good, 3)
    ctx.add("pref.kto_balance", WARNING, f"KTO balance: desirable_weight {_g(p.desirable_weight)} x {good:,} desirable "
            f"/ (undesirable_weight {_g(p.undesirable_weight)} x {bad:,} undesirable) = {ratio:.2f}; the KTO paper "
            "keeps it between 1 and 4/3, else one kind of answer dominates the loss",
            f"set preference.desirable_weight: {want:g}", field="preference.desirable_weight",
            edit={"preference.desirable_weight": want})
