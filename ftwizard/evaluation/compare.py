"""The side-by-side comparison: per-model results in, one summary out. Light (no torch).

`summary.json` (documented for scripts; `ftwizard eval --json` prints it):

    version          2
    task             "math" | "json" | "label" | "text": how the outputs were scored
    primary_metric   the metric the verdict and the best checkpoint follow (answer_accuracy, field_score,
                     macro_f1, rouge_l; or the one chosen with --metric / evaluation.metric)
    headline_rule    for JSON: how field_score is made ("fields = mean of urgency accuracy, ...")
    metrics          [{name, description, higher_is_better}], the main table's columns in order
    field_metrics    [{name, description, higher_is_better}], JSON only: one column per field
    behaviour        [{name, description, higher_is_better}]: stop_rate, loop_rate, length_ratio
    models           [{id, label, kind, step, few_shot, metrics: {name: value|null}}], table order:
                     base, base-<k>shot, checkpoint-<step>..., final
    best             {metric: model id}: the best row only where its lead over every other row is outside
                     the noise (95 % paired bootstrap interval excludes zero); null otherwise
    leader           {metric: model id}: the best value, noise or not
    best_checkpoint  id of the best fine-tuned model by the primary metric (lower eval
                     loss breaks ties), or null before training
    verdict          {baseline, tuned, metric, baseline_score, tuned_score, margin, low, high, n,
                      status: better|worse|inconclusive|unchanged, rows_to_settle, beats_baseline,
                      identical_outputs, text}: the best fine-tuned model against the best base row
    probe            {baseline, tuned, baseline_score, tuned_score, margin, low, high, n, status} or null
    warnings         [str]: worse than the base, unchanged, forgetting outside the noise, looping, running
                     to the token limit
    notes            [str]: inconclusive differences worth knowing
    details          {model id: field_accuracy / confusion / field_kinds}
    samples          [{row, input, reference, base, base_correct, kshot, kshot_label, kshot_correct,
                       tuned, tuned_correct}]
    missing          model ids planned but without a result yet
    judge            the LLM judge's judge.json (when one is configured; its `text` is shown), or null
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ftwizard.evaluation import metrics as M
from ftwizard.evaluation import stats
from ftwizard.evaluation.probe import DROP_WARNING
from ftwizard.fileio import atomic_write_text

SUMMARY_VERSION = 2
NOTHING_CHANGED = 0.9  # this share of outputs identical to the base's: training changed almost nothing
LOOP_WARNING = 0.2     # a fine-tuned model looping in this share of outputs is warned about
STOP_WARNING = 0.8     # ... or ending its turn in fewer than this share


def load_results(eval_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(Path(eval_dir).glob("*.json")):
        if p.name in ("summary.json", "spec.json", "status.json", "judge.json"):
            continue
        try:
            res = json.loads(p.read_text())
        except ValueError:
            continue
        if isinstance(res, dict) and "metrics" in res and "id" in res:
            out[res["id"]] = res
    return out


def _order(res: dict[str, Any]) -> tuple:
    rank = {"base": 0}.get(res["id"], 1 if res["kind"] == "base" else 3 if res["id"] == "final" else 2)
    return rank, res.get("step") or 0, res["id"]


def _best(models: list[dict[str, Any]], metric: str) -> str | None:
    vals = [(m["metrics"].get(metric), i) for i, m in enumerate(models) if m["metrics"].get(metric) is not None]
    if not vals:
        return None
    sign = 1 if M.higher_is_better(metric) else -1
    best = max(vals, key=lambda v: (sign * v[0], -v[1]))  # ties: the earlier row
    return models[best[1]]["id"]


def is_percent(metric: str) -> bool:
    from ftwizard.evaluation.report import PERCENT

    return metric in PERCENT or metric.startswith(("field:", "custom:"))


# ---- intervals -------------------------------------------------------------------
def interval(metric: str, a: dict[str, Any] | None, b: dict[str, Any] | None) -> stats.Interval | None:
    """Paired bootstrap interval of metric(a) - metric(b), or None when the rows to resample are missing."""
    if not a or not b:
        return None
    ra, rb = a.get("rows") or {}, b.get("rows") or {}
    if metric == "probe_score":
        pa, pb = ra.get("probe"), rb.get("probe")
        if pa and pb and len(pa) == len(pb):
            return stats.paired_mean(pa, pb)
        return None
    if metric in ("eval_loss", "perplexity"):
        la, lb = ra.get("loss"), rb.get("loss")
        if not la or not lb or len(la) != len(lb) or not sum(x[1] for x in la) or not sum(x[1] for x in lb):
            return None
        tf = (lambda x: __import__("numpy").exp(__import__("numpy").minimum(x, 50.0))) if metric == "perplexity" \
            else None
        return stats.paired_ratio([x[0] for x in la], [x[1] for x in la], [x[0] for x in lb], [x[1] for x in lb], tf)
    if metric == "macro_f1":
        da, db = a.get("details") or {}, b.get("details") or {}
        pa, pb, refs = da.get("labels"), db.get("labels"), da.get("reference_labels")
        if not pa or not pb or not refs or len(pa) != len(pb) or len(refs) != len(pa):
            return None
        return stats.paired_statistic(lambda idx: (M.macro_f1([pa[i] for i in idx], [refs[i] for i in idx]),
                                                   M.macro_f1([pb[i] for i in idx], [refs[i] for i in idx])),
                                      len(pa))
    va, vb = ra.get(metric), rb.get(metric)
    if va and vb and len(va) == len(vb):
        return stats.paired_mean(va, vb)
    return None


def _significant_best(metric: str, leader: str | None, results: dict[str, dict[str, Any]],
                      models: list[dict[str, Any]]) -> str | None:
    """The leader, if its lead over every other row with a value is outside the noise."""
    if leader is None:
        return None
    sign = 1 if M.higher_is_better(metric) else -1
    others = [m["id"] for m in models if m["id"] != leader and m["metrics"].get(metric) is not None]
    if not others:
        return None
    for o in others:
        iv = interval(metric, _with_probe(results, leader), _with_probe(results, o))
        if iv is None or not (sign * iv.low > 0 if sign > 0 else sign * iv.high > 0):
            return None
    return leader


def _with_probe(results: dict[str, dict[str, Any]], mid: str) -> dict[str, Any] | None:
    """A k-shot base row takes the base's probe rows (same weights, probe not re-run)."""
    res = results.get(mid)
    if res and res.get("few_shot") and "base" in results and "probe" not in (res.get("rows") or {}):
        base_probe = (results["base"].get("rows") or {}).get("probe")
        if base_probe:
            res = dict(res, rows=dict(res.get("rows") or {}, probe=base_probe))
    return res


# ---- wording ---------------------------------------------------------------------
def fmt_margin(metric: str, diff: float) -> str:
    if is_percent(metric):
        return f"{diff * 100:+.0f} pts"
    return f"{diff:+.3f}" if metric not in ("chrf", "bleu") else f"{diff:+.1f}"


def fmt_interval(metric: str, iv: stats.Interval) -> str:
    return f"{fmt_margin(metric, iv.diff)} (95% CI {fmt_margin(metric, iv.low)} to {fmt_margin(metric, iv.high)}, " \
           f"{iv.n} rows)"


def _verdict(primary: str, base_m: dict, tuned_m: dict, iv: stats.Interval | None, same: float | None) -> dict:
    from ftwizard.evaluation.report import SHORT, fmt_value

    b, t = base_m["metrics"].get(primary), tuned_m["metrics"].get(primary)
    sign = 1 if M.higher_is_better(primary) else -1
    name = SHORT.get(primary, primary)
    head = f"{tuned_m['label']} {name} {fmt_value(primary, t)} vs {base_m['label']} {fmt_value(primary, b)}"
    v: dict[str, Any] = {"baseline": base_m["id"], "tuned": tuned_m["id"], "metric": primary, "baseline_score": b,
                         "tuned_score": t, "margin": None, "low": None, "high": None, "n": None,
                         "rows_to_settle": None, "identical_outputs": same}
    if same is not None and same >= NOTHING_CHANGED:
        status = "unchanged"
        text = f"{head}: training changed almost nothing ({same:.0%} of outputs identical to the base's)"
    elif iv is None:
        status = "inconclusive"
        text = f"{head}: no per-row values to judge the difference (re-run `ftwizard eval --redo`)"
    else:
        v.update(margin=iv.diff, low=iv.low, high=iv.high, n=iv.n, rows_to_settle=iv.rows_to_settle())
        margin = fmt_interval(primary, iv)
        if iv.includes_zero or math.isnan(iv.low):
            status = "inconclusive"
            need = iv.rows_to_settle()
            more = (f"evaluate more rows (about {need:,} would settle it)" if need else
                    "no difference measured; more rows would only narrow the interval around zero")
            text = f"{head}, {margin}: inconclusive: {more}"
        elif sign * iv.diff > 0:
            status = "better"
            text = f"{head}, {margin}: fine-tuning beats {base_m['label']}, outside the noise"
        else:
            status = "worse"
            text = f"{head}, {margin}: worse than {base_m['label']}, outside the noise: do not ship it"
    v.update(status=status, beats_baseline=status == "better", text=text)
    return v


# ---- the summary -------------------------------------------------------------------
def build_summary(eval_dir: Path, planned: list[str] | None = None, primary: str | None = None) -> dict[str, Any]:
    results = load_results(eval_dir)
    if planned is not None:
        results = {k: v for k, v in results.items() if k in planned}
    ordered = sorted(results.values(), key=_order)
    task = next((r["task"] for r in ordered), "text")
    present = {k for r in ordered for k, v in r["metrics"].items() if v is not None}
    primary = primary if primary and primary in present else M.PRIMARY.get(task, "rouge_l")
    customs = sorted(k for k in present if k.startswith("custom:"))
    columns = [primary] + [c for c in customs + M.TASK_METRICS.get(task, []) + M.TOOL_METRICS + ["exact_match", "eval_loss",
                                                                                "perplexity", "probe_score"]
                           if c != primary]
    columns = [c for c in columns if c in present] or columns
    fields = sorted(k for k in present if k.startswith("field:"))
    if primary in fields:
        fields.remove(primary)
    behaviour = [c for c in M.BEHAVIOUR if c in present]

    base_res = results.get("base")
    models = []
    for r in ordered:
        vals = {c: r["metrics"].get(c) for c in columns + fields + behaviour}
        if r.get("few_shot") and vals.get("probe_score") is None and base_res:
            vals["probe_score"] = base_res["metrics"].get("probe_score")  # same weights: the base's probe
        models.append({"id": r["id"], "label": r["label"], "kind": r["kind"], "step": r.get("step"),
                       "few_shot": r.get("few_shot", 0), "metrics": vals})
    leader = {c: _best(models, c) for c in columns + fields}
    best = {c: _significant_best(c, leader[c], results, models) for c in columns + fields}

    tuned = [m for m in models if m["kind"] != "base"]
    bases = [m for m in models if m["kind"] == "base"]
    best_ckpt = None
    if tuned:
        sign = 1 if M.higher_is_better(primary) else -1

        def rank(m):
            p = m["metrics"].get(primary)
            loss = m["metrics"].get("eval_loss")
            return (sign * p if p is not None else -math.inf, -(loss if loss is not None else math.inf))
        best_ckpt = max(tuned, key=rank)["id"]

    warnings: list[str] = []
    notes: list[str] = []
    verdict = None
    probe = None
    if best_ckpt and bases:
        sign = 1 if M.higher_is_better(primary) else -1
        top_base = max(bases, key=lambda m: sign * m["metrics"][primary] if m["metrics"].get(primary) is not None
                       else -math.inf)
        tuned_m = next(m for m in models if m["id"] == best_ckpt)
        same = identical_share(results.get(top_base["id"]), results.get(best_ckpt))
        iv = interval(primary, results.get(best_ckpt), results.get(top_base["id"]))
        verdict = _verdict(primary, top_base, tuned_m, iv, same)
        if verdict["status"] in ("worse", "unchanged"):
            warnings.append(verdict["text"])
    if base_res and base_res["metrics"].get("probe_score") is not None:
        b = base_res["metrics"]["probe_score"]
        for m in tuned:
            p = m["metrics"].get("probe_score")
            if p is None:
                continue
            iv = interval("probe_score", results.get(m["id"]), base_res)
            if m["id"] == best_ckpt:
                probe = {"baseline": "base", "tuned": m["id"], "baseline_score": b, "tuned_score": p,
                         "margin": p - b, "low": iv.low if iv else None, "high": iv.high if iv else None,
                         "n": iv.n if iv else None,
                         "status": "unknown" if iv is None else "inconclusive" if iv.includes_zero else
                         "better" if iv.diff > 0 else "worse"}
            if iv is not None and iv.high < 0:
                warnings.append(f"{m['label']} forgot general skills: probe {p:.0%} vs base {b:.0%}, "
                                f"{fmt_interval('probe_score', iv)} (lower the learning rate or epochs, or mix in "
                                "general data)")
            elif iv is None and b - p > DROP_WARNING:
                warnings.append(f"{m['label']} forgot general skills: regression probe {p:.0%} vs base {b:.0%} "
                                "(lower the learning rate or epochs, or mix in general data)")
            elif iv is not None and b - p > DROP_WARNING and m["id"] != best_ckpt:  # the best's is in `probe`
                notes.append(f"{m['label']} probe {p:.0%} vs base {b:.0%}, {fmt_interval('probe_score', iv)}: "
                             "inside the noise of the probe's prompts")
    for m in models:
        lr, sr = m["metrics"].get("loop_rate"), m["metrics"].get("stop_rate")
        res = results[m["id"]]
        n = len(res.get("samples") or [])
        if lr is not None and lr >= LOOP_WARNING and m["kind"] != "base":
            warnings.append(f"{m['label']} repeats itself in {round(lr * n)} of {n} outputs (loop rate {lr:.0%}): "
                            "a sign of over-training or a missing end-of-turn token in the data")
        if sr is not None and sr < STOP_WARNING and m["kind"] != "base":
            warnings.append(f"{m['label']} ran to the token limit in {n - round(sr * n)} of {n} outputs "
                            f"(stop rate {sr:.0%}): it does not end its turn")

    samples = _samples(results, base_res, best_ckpt, bases)
    defs = lambda names: [{"name": c, "description": M.describe(c), "higher_is_better": M.higher_is_better(c)}  # noqa: E731
                          for c in names]
    rule = next((r.get("details", {}).get("headline_rule") for r in ordered if r.get("details", {}).get("headline_rule")),
                None)
    kinds = next((r["details"]["field_kinds"] for r in ordered if (r.get("details") or {}).get("field_kinds")), {})
    kind_words = {"label": "accuracy (a field with few values)", "text": "ROUGE-L F1 (a free-text field)",
                  "exact": "exact match (an id, number or list)"}
    field_defs = [{"name": f, "description": f"field {f[6:]}: {kind_words.get(kinds.get(f[6:]), 'score')}, "
                                             "0 when missing or not JSON", "higher_is_better": True} for f in fields]
    return {
        "version": SUMMARY_VERSION,
        "task": task,
        "primary_metric": primary,
        "headline_rule": rule,
        "metrics": defs(columns),
        "field_metrics": field_defs,
        "behaviour": defs(behaviour),
        "models": models,
        "best": best,
        "leader": leader,
        "best_checkpoint": best_ckpt,
        "verdict": verdict,
        "probe": probe,
        "warnings": warnings,
        "notes": notes,
        "details": {r["id"]: {k: v for k, v in (r.get("details") or {}).items()
                              if k in ("field_accuracy", "confusion", "field_kinds")} for r in ordered},
        "samples": samples,
        "missing": [p for p in (planned or []) if p not in results],
        "judge": _judge(eval_dir),
    }


def _judge(eval_dir: Path) -> dict[str, Any] | None:
    """The LLM judge's result (evaluation/judge.py writes judge.json when a judge is configured)."""
    try:
        j = json.loads((Path(eval_dir) / "judge.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return j if isinstance(j, dict) else None


def _samples(results, base_res, best_ckpt, bases) -> list[dict[str, Any]]:
    if not base_res:
        return []
    other = results.get(best_ckpt) if best_ckpt else None
    kshot_m = next((b for b in bases if b["few_shot"]), None)
    kshot = results.get(kshot_m["id"]) if kshot_m else None
    out = []
    for i, s in enumerate(base_res["samples"]):
        o = other["samples"][i] if other and i < len(other["samples"]) else None
        k = kshot["samples"][i] if kshot and i < len(kshot["samples"]) else None
        item = {"row": s["row"], "input": s["input"], "reference": s["reference"],
                "base": s["output"], "base_correct": s["correct"],
                "tuned": o["output"] if o else None, "tuned_correct": o["correct"] if o else None}
        if kshot_m:
            item.update(kshot=k["output"] if k else None, kshot_correct=k["correct"] if k else None,
                        kshot_label=kshot_m["label"])
        out.append(item)
    return out


def identical_share(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or not a.get("samples") or len(a["samples"]) != len(b["samples"]):
        return None
    same = sum(M.normalise(x["output"]) == M.normalise(y["output"]) for x, y in zip(a["samples"], b["samples"]))
    return same / len(a["samples"])


def write_summary(eval_dir: Path, summary: dict[str, Any]) -> Path:
    path = Path(eval_dir) / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=1))
    return path


def read_summary(eval_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(eval_dir) / "summary.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
