"""runs/NAME/summary.md: one page that says what a run was and what came of it.

Written by the trainer process when the run ends (completed, stopped or failed), and
again by `ftwizard runs --summary NAME` on demand (after an eval or an export, say).
Plain Markdown with pipe tables and a YAML block: readable with `cat` in a terminal and
rendered on a code host. Light (no torch): it reads the run folder only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ftwizard.compare import fmt, run_facts
from ftwizard.fileio import atomic_write_text
from ftwizard.rundir import RunDir

NAME = "summary.md"


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "-"


def _duration(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b < a:
        return "-"
    s = int(b - a)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _cell(v: Any) -> str:
    return fmt(v).replace("|", "\\|")


def _data_rows(run: RunDir, cfg) -> list[str]:
    from ftwizard.export.card import fingerprint

    rows = []
    data_ev = next((e for e in run.iter_events() if e.get("event") == "data"), {})
    for split, path in (("train", cfg.data.train), ("eval", cfg.data.eval)):
        if not path:
            continue
        p = Path(path)
        if not p.is_file():
            rows.append(f"| {split} | `{p}` | - | - | (file not found now) |")
            continue
        try:
            fp = fingerprint(p)
        except OSError as e:
            rows.append(f"| {split} | `{p}` | - | - | cannot read: {e.strerror} |")
            continue
        rows.append(f"| {split} | `{p}` | {fp['rows'] if fp['rows'] is not None else '-'} | {fp['bytes']:,} | "
                    f"`{fp['sha256']}` |")
    if data_ev:
        rows.append("")
        rows.append(f"Trained on {data_ev.get('train_rows', '-')} rows ({data_ev.get('train_tokens', 0):,} tokens); "
                    f"{data_ev.get('trainable_params', 0):,} of {data_ev.get('total_params', 0):,} parameters trained.")
    return rows


def build_summary(run: RunDir) -> str:
    """The Markdown text for one run folder."""
    from ftwizard.compare import read_config_dict

    st = run.status()
    facts = run_facts(run)
    raw_cfg = read_config_dict(run)
    cfg = None
    try:
        from ftwizard.config import load_config

        cfg = load_config(run.config)
    except Exception:  # noqa: BLE001 - a summary of a run whose config no longer validates is still useful
        pass
    out = [f"# Run {run.name}", ""]
    out += ["| | |", "|---|---|",
            f"| state | **{st.get('state', 'unknown')}** |",
            f"| started | {_when(st.get('started_at'))} |",
            f"| ended | {_when(st.get('ended_at'))} ({_duration(st.get('started_at'), st.get('ended_at'))}) |",
            f"| steps | {facts['steps'] if facts['steps'] is not None else '-'}"
            f"{' of ' + str(st['max_steps']) if st.get('max_steps') else ''} |",
            f"| folder | `{run.path.resolve()}` |"]
    if st.get("message"):
        out.append(f"| message | {' '.join(str(st['message']).split()).replace('|', chr(92) + '|')} |")  # in full
    if cfg is not None:
        out += [f"| base model | {cfg.model.base} |", f"| method | {cfg.model.method} |"]
    out += ["", "## Final metrics", "", "| metric | value | at step |", "|---|---:|---:|",
            f"| final train loss | {_cell(facts['final_loss'])} | {facts['curve']['steps'][-1] if facts['curve']['steps'] else '-'} |",
            f"| best train loss | {_cell(facts['best_loss'])} | {_cell(facts['best_step'])} |",
            f"| final eval loss | {_cell(facts['final_eval_loss'])} | {facts['eval_curve']['steps'][-1] if facts['eval_curve']['steps'] else '-'} |",
            f"| best eval loss | {_cell(facts['best_eval_loss'])} | {_cell(facts['best_eval_step'])} |"]
    div = st.get("divergence")
    if isinstance(div, dict):
        out += ["", f"Divergence: {div.get('reason', '')} (step {div.get('step', '-')}). {div.get('fix', '')}"]

    from ftwizard.export.card import eval_table

    out += ["", "## Evaluation", ""]
    table = eval_table(run.eval_dir)
    if table:
        out.append(table.replace("### ", "", 1))
    else:
        out.append(f"No evaluation yet: `ftwizard eval {run.name}`.")

    out += ["", "## Data", ""]
    if cfg is not None:
        out += ["| split | file | rows | bytes | SHA-256 |", "|---|---|---:|---:|---|"] + _data_rows(run, cfg)
    else:
        out.append("(the config could not be read)")

    out += ["", "## Results and exports", ""]
    result = st.get("output")
    out.append(f"- trained result: `{result}`" if result else "- trained result: none (the run did not finish)")
    ck = run.last_checkpoint()
    if ck is not None:
        out.append(f"- last checkpoint: `{ck}`")
    from ftwizard.export.manifest import read_manifest

    manifest = read_manifest(run.export_dir)
    if manifest:
        for key, e in (manifest.get("exports") or {}).items():
            files = e.get("files") or []
            where = f"`{run.export_dir / files[0]['path']}`" if len(files) == 1 else f"`{run.export_dir}`"
            out.append(f"- export {key}: {e.get('state')}" + (f", {where}" if e.get("state") == "ok" else
                                                                 f" ({e.get('reason', '')})"))
    else:
        out.append(f"- exports: none yet (`ftwizard export {run.name}`)")
    if cfg is not None and cfg.training.report_to:
        from ftwizard.tracking import where

        out += ["", "## Trackers", "", "| tracker | where | look at it |", "|---|---|---|"]
        out += [f"| {w['tracker']} | `{w['location']}` | `{w['view']}` |" for w in where(cfg, run.path)]

    import yaml

    shown = {k: v for k, v in raw_cfg.items() if k != "notify"}  # a webhook URL may be a secret
    out += ["", "## Config", "", "```yaml", yaml.safe_dump(shown, sort_keys=False, allow_unicode=True).rstrip(),
            "```", "", f"_Written by ftwizard at {_when(time.time())}._", ""]
    return "\n".join(out)


def write_summary(run: RunDir) -> Path:
    path = run.path / NAME
    atomic_write_text(path, build_summary(run))
    return path


def write_summary_quietly(run: RunDir) -> Path | None:
    """For the trainer's last moments: a summary that cannot be written is not a failed run."""
    try:
        return write_summary(run)
    except Exception:  # noqa: BLE001
        return None
