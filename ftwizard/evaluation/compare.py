"""The side-by-side comparison: per-model results in, one summary out. Light (no torch).

`summary.json` (documented for scripts; `ftwizard eval --json` prints it):

    version          1
    task             "json" | "label" | "text": how the outputs were scored
    primary_metric   the metric that picks the best checkpoint (field_f1, macro_f1, rouge_l)
    metrics          [{name, description, higher_is_better}], the table's columns in order
    models           [{id, label, kind, step, few_shot, metrics: {name: value|null}}], table order:
                     base, base-<k>shot, checkpoint-<step>..., final
    best             {metric: model id with the best value}
    best_checkpoint  id of the best fine-tuned model by the primary metric (lower eval
                     loss breaks ties), or null before training
    verdict          {baseline, tuned, baseline_score, tuned_score, beats_baseline,
                      identical_outputs}: the best fine-tuned model against the best base row
    warnings         [str]: not beating the base, "training changed almost nothing", probe drops
    details          {model id: field_accuracy or confusion}
    samples          [{row, input, reference, base, tuned, base_correct, tuned_correct}]
    missing          model ids planned but without a result yet
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftwizard.evaluation import metrics as M
from ftwizard.evaluation.probe import DROP_WARNING
from ftwizard.fileio import atomic_write_text

SUMMARY_VERSION = 1
NOTHING_CHANGED = 0.9  # this share of outputs identical to the base's: training changed almost nothing
MIN_GAIN = 0.02        # a primary-metric gain smaller than this does not count as beating the base


def load_results(eval_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(Path(eval_dir).glob("*.json")):
        if p.name in ("summary.json", "spec.json", "status.json"):
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


def build_summary(eval_dir: Path, planned: list[str] | None = None) -> dict[str, Any]:
    results = load_results(eval_dir)
    if planned is not None:
        results = {k: v for k, v in results.items() if k in planned}
    ordered = sorted(results.values(), key=_order)
    task = next((r["task"] for r in ordered), "text")
    primary = M.PRIMARY[task]
    columns = M.TASK_METRICS[task] + ["exact_match", "eval_loss", "perplexity", "probe_score"]
    columns = [c for c in columns if any(r["metrics"].get(c) is not None for r in ordered)] or columns
    models = [{"id": r["id"], "label": r["label"], "kind": r["kind"], "step": r.get("step"),
               "few_shot": r.get("few_shot", 0), "metrics": {c: r["metrics"].get(c) for c in columns}}
              for r in ordered]
    best = {c: _best(models, c) for c in columns}
    tuned = [m for m in models if m["kind"] != "base"]
    bases = [m for m in models if m["kind"] == "base"]
    best_ckpt = None
    if tuned:
        def rank(m):
            p = m["metrics"].get(primary)
            loss = m["metrics"].get("eval_loss")
            return (p if p is not None else -1.0, -(loss if loss is not None else float("inf")))
        best_ckpt = max(tuned, key=rank)["id"]

    warnings: list[str] = []
    verdict = None
    samples: list[dict[str, Any]] = []
    base_res = results.get("base")
    if best_ckpt and bases:
        top_base = max(bases, key=lambda m: m["metrics"].get(primary) or 0.0)
        tuned_m = next(m for m in models if m["id"] == best_ckpt)
        b, t = top_base["metrics"].get(primary) or 0.0, tuned_m["metrics"].get(primary) or 0.0
        same = identical_share(results.get(top_base["id"]), results.get(best_ckpt))
        verdict = {"baseline": top_base["id"], "tuned": best_ckpt, "baseline_score": b, "tuned_score": t,
                   "beats_baseline": t >= b + MIN_GAIN, "identical_outputs": same}
        if same is not None and same >= NOTHING_CHANGED:
            warnings.append(f"training changed almost nothing: {same:.0%} of {best_ckpt}'s outputs are identical to "
                            f"{top_base['label']}'s (raise the learning rate or epochs, check the data)")
        elif not verdict["beats_baseline"]:
            warnings.append(f"{tuned_m['label']} does not beat {top_base['label']} on {primary} ({t:.3f} vs {b:.3f}): "
                            "do not ship it (guidance: compare against the base with the best prompt)")
    if base_res and base_res["metrics"].get("probe_score") is not None:
        b = base_res["metrics"]["probe_score"]
        for m in tuned:
            p = m["metrics"].get("probe_score")
            if p is not None and b - p > DROP_WARNING:
                warnings.append(f"{m['label']} forgot general skills: regression probe {p:.0%} vs base {b:.0%} "
                                "(lower the learning rate or epochs, or mix in general data)")
    if base_res:
        other = results.get(best_ckpt) if best_ckpt else None
        for i, s in enumerate(base_res["samples"]):
            o = other["samples"][i] if other and i < len(other["samples"]) else None
            samples.append({"row": s["row"], "input": s["input"], "reference": s["reference"],
                            "base": s["output"], "base_correct": s["correct"],
                            "tuned": o["output"] if o else None, "tuned_correct": o["correct"] if o else None})
    return {
        "version": SUMMARY_VERSION,
        "task": task,
        "primary_metric": primary,
        "metrics": [{"name": c, "description": M.describe(c), "higher_is_better": M.higher_is_better(c)} for c in columns],
        "models": models,
        "best": best,
        "best_checkpoint": best_ckpt,
        "verdict": verdict,
        "warnings": warnings,
        "details": {r["id"]: r.get("details", {}) for r in ordered},
        "samples": samples,
        "missing": [p for p in (planned or []) if p not in results],
    }


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
