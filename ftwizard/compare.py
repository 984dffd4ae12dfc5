"""Runs side by side: what differs in their configs, how their losses ended, their eval
metrics, and their loss curves. Read from the run folders only (light: no torch, no Textual).

`compare_runs` returns the JSON that `ftwizard runs --compare A B --json` prints:

    runs         [{name, path, state, steps, final_loss, best_loss, best_step, final_eval_loss,
                   best_eval_loss, best_eval_step, eval: {primary_metric, model, metrics} | null,
                   curve: {steps, loss}, eval_curve: {steps, loss}}]
    config_diff  {dotted.key: [value in run 1, value in run 2, ...]}: only the keys that differ
    same_keys    how many config keys are equal in all runs (not listed)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ftwizard.rundir import RunDir, latest_by_step

IGNORED_KEYS = ("name",)  # always differs; the run's name is the column header


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted.key: value}; lists stay values (compared whole)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def read_config_dict(run: RunDir) -> dict[str, Any]:
    """The run's config as a plain mapping, with today's defaults filled in (so a field added
    after a run was made does not show as a difference); the YAML as written when it no longer
    validates, so an old run can still be compared."""
    try:
        from ftwizard.config import load_config

        return load_config(run.config).to_dict()
    except Exception:  # noqa: BLE001 - any config problem: fall back to the text as written
        pass
    try:
        data = yaml.safe_load(run.config.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def eval_facts(run: RunDir) -> dict[str, Any] | None:
    """The fine-tuned model's row of `ftwizard eval`'s summary.json (the verdict's tuned model,
    else `final`, else the last fine-tuned row), with the primary metric named."""
    try:
        s = json.loads((run.eval_dir / "summary.json").read_text())
        models = s.get("models") or []
        want = (s.get("verdict") or {}).get("tuned") if isinstance(s.get("verdict"), dict) else None
        tuned = [m for m in models if m.get("kind") not in ("base", "baseline") and not str(m.get("id", "")).startswith("base")]
        row = next((m for m in models if m.get("id") == want), None) or \
            next((m for m in models if m.get("id") == "final"), None) or (tuned[-1] if tuned else None)
        if row is None:
            return None
        base = next((m for m in models if str(m.get("id")) == "base"), None)
        return {"primary_metric": s.get("primary_metric"), "model": row.get("id"),
                "metrics": {k: v for k, v in (row.get("metrics") or {}).items() if isinstance(v, (int, float))},
                "base_metrics": {k: v for k, v in ((base or {}).get("metrics") or {}).items()
                                 if isinstance(v, (int, float))} or None}
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def run_facts(run: RunDir) -> dict[str, Any]:
    """Losses and eval results of one run, from events.jsonl, status.json and eval/summary.json."""
    events = list(run.iter_events())
    train = [e for e in latest_by_step(events, "train") if isinstance(e.get("loss"), (int, float))]
    evals = [e for e in latest_by_step(events, "eval") if isinstance(e.get("eval_loss"), (int, float))]
    st = run.status()
    best = min(train, key=lambda e: e["loss"]) if train else None
    best_eval = min(evals, key=lambda e: e["eval_loss"]) if evals else None
    return {
        "name": run.name, "path": str(run.path), "state": st.get("state", "unknown"),
        "steps": st.get("step") if st.get("step") is not None else (train[-1]["step"] if train else None),
        "final_loss": train[-1]["loss"] if train else None,
        "best_loss": best["loss"] if best else None, "best_step": best["step"] if best else None,
        "final_eval_loss": evals[-1]["eval_loss"] if evals else None,
        "best_eval_loss": best_eval["eval_loss"] if best_eval else None,
        "best_eval_step": best_eval["step"] if best_eval else None,
        "eval": eval_facts(run),
        "curve": {"steps": [e["step"] for e in train], "loss": [e["loss"] for e in train]},
        "eval_curve": {"steps": [e["step"] for e in evals], "loss": [e["eval_loss"] for e in evals]},
    }


def config_diff(configs: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], int]:
    """({key: [value per run]} for keys whose values differ, number of keys equal everywhere)."""
    flat = [flatten(c) for c in configs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    diff, same = {}, 0
    for k in keys:
        if k in IGNORED_KEYS:
            continue
        vals = [f.get(k) for f in flat]
        if all(json.dumps(v, sort_keys=True, default=str) == json.dumps(vals[0], sort_keys=True, default=str)
               for v in vals):
            same += 1
        else:
            diff[k] = vals
    return diff, same


def compare_runs(runs: list[RunDir]) -> dict[str, Any]:
    facts = [run_facts(r) for r in runs]
    diff, same = config_diff([read_config_dict(r) for r in runs])
    return {"runs": facts, "config_diff": diff, "same_keys": same}


def metric_names(cmp: dict[str, Any]) -> list[str]:
    """Eval metrics present in any run, the primary ones first."""
    names: list[str] = []
    for f in cmp["runs"]:
        ev = f.get("eval") or {}
        if ev.get("primary_metric") and ev["primary_metric"] not in names:
            names.append(ev["primary_metric"])
    for f in cmp["runs"]:
        for k in ((f.get("eval") or {}).get("metrics") or {}):
            if k not in names:
                names.append(k)
    return names


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    s = str(v)
    return s if len(s) <= 40 else "..." + s[-37:]  # paths: the end says most


def short_path(v: Any) -> Any:
    """Paths in a diff: the file name is what differs between runs, usually."""
    if isinstance(v, str) and "/" in v:
        return Path(v).name or v
    return v
