"""Rich views of an eval summary: the model-by-metric table and one sample side by side.

Shared by `ftwizard eval` (printed) and the wizard's Evaluate step (shown in a Static),
so both say the same thing. No torch, no Textual.
"""

from __future__ import annotations

import difflib
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

PERCENT = {"exact_match", "json_parse_rate", "schema_match", "field_precision", "field_recall", "field_f1",
           "accuracy", "macro_f1", "rouge_l", "probe_score", "answer_accuracy", "answer_marked", "field_score",
           "stop_rate", "loop_rate", "pref_accuracy", "pref_accuracy_norm"}
SHORT = {"json_parse_rate": "JSON", "schema_match": "schema", "field_precision": "fld P",
         "field_recall": "fld R", "field_f1": "fld F1", "exact_match": "exact", "eval_loss": "loss",
         "perplexity": "ppl", "probe_score": "probe", "macro_f1": "macro F1", "accuracy": "acc",
         "rouge_l": "ROUGE-L", "chrf": "chrF", "bleu": "BLEU", "answer_accuracy": "answer",
         "answer_marked": "marked", "field_score": "fields", "stop_rate": "stops", "loop_rate": "loops",
         "length_ratio": "len/ref", "pref_accuracy": "pref acc", "pref_accuracy_norm": "acc/tok",
         "reward_margin": "margin"}
KIND_SHORT = {"label": "acc", "text": "RL", "exact": "exact"}


def short(name: str, summary: dict[str, Any] | None = None) -> str:
    if name.startswith("field:"):
        kinds = ((summary or {}).get("details") or {})
        kind = next((d.get("field_kinds", {}).get(name[6:]) for d in kinds.values() if d.get("field_kinds")), None)
        return f"{name[6:]} {KIND_SHORT.get(kind, '')}".strip()
    if name.startswith("custom:"):
        return name[7:]
    return SHORT.get(name, name)


def fmt_value(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in PERCENT or name.startswith(("field:", "custom:")):
        return f"{value * 100:.0f}%"
    if name == "length_ratio":
        return f"x{value:.2f}" if value < 10 else f"x{value:.0f}"
    if name == "perplexity":
        return f"{value:.2f}" if value < 1000 else f"{value:.3g}"
    if name in ("chrf", "bleu"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def _table(summary: dict[str, Any], cols: list[str], title: str, stars: bool = True) -> Group:
    """A titled table; the title is a line of its own so a narrow table does not wrap it."""
    table = Table(header_style="bold", pad_edge=False, box=box.SIMPLE_HEAD,
                  padding=(0, 0, 0, 1), collapse_padding=True)
    table.add_column("model", no_wrap=True)
    for c in cols:
        head = short(c, summary)
        width = max(len(head), 6)
        table.add_column(head, justify="right", no_wrap=True, min_width=width)
    best = summary.get("best") or {}
    for m in summary["models"]:
        label = Text(m["label"])
        if m["id"] == summary.get("best_checkpoint"):
            label.append(" (best)", style="bold green")
        cells = []
        for c in cols:
            v = m["metrics"].get(c)
            is_best = stars and best.get(c) == m["id"]
            style = "bold green" if is_best else ""
            if c == "loop_rate" and v is not None and v >= 0.2 or c == "stop_rate" and v is not None and v < 0.8:
                style = "bold yellow"
            cells.append(Text(fmt_value(c, v) + ("*" if is_best else " "), style=style))
        table.add_row(label, *cells)
    return Group(Text(title, style="bold"), table)


def metrics_table(summary: dict[str, Any]) -> Group:
    """Models as rows: the task metrics (primary first), per-field scores for JSON, then behaviour and health.
    A star marks a best value only when its lead over every other row is outside the noise (95 % paired
    bootstrap interval); each table stays under 80 columns so nothing is cut on a small terminal."""
    names = [m["name"] for m in summary["metrics"]]
    health = [c for c in names if c in ("eval_loss", "perplexity", "probe_score")]
    task_cols = [c for c in names if c not in health]
    n = len((summary.get("samples") or []))
    rows = f", {n} rows" if n else ""
    parts: list = [_table(summary, task_cols, f"held-out {summary['task']} metrics{rows} "
                                              f"(* best outside the noise)")]
    fields = [m["name"] for m in summary.get("field_metrics") or []]
    if fields:
        parts.append(_table(summary, fields, "per field"))
    if summary.get("headline_rule"):
        parts.append(Text(f"headline: {summary['headline_rule']}", style="dim"))
    beh = [m["name"] for m in summary.get("behaviour") or []]
    if beh or health:
        parts.append(_table(summary, beh + health, "behaviour and health"))
    return Group(*parts)


def legend(summary: dict[str, Any]) -> Table:
    """What each column measures, one line each."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold", no_wrap=True)
    grid.add_column(style="dim")
    for m in (summary["metrics"] + (summary.get("field_metrics") or []) + (summary.get("behaviour") or [])):
        grid.add_row(short(m["name"], summary), m["description"])
    grid.add_row("*", "best value, marked only when its lead over every other row is outside the noise "
                      "(95% paired bootstrap interval excludes zero; corpus-level chrF/BLEU/field F1 never starred)")
    return grid


def verdict_text(summary: dict[str, Any]) -> Text:
    out = Text()
    v = summary.get("verdict")
    if v:
        status = v.get("status")
        mark, style = {"better": ("v ", "bold green"), "worse": ("x ", "bold red"),
                       "unchanged": ("! ", "bold yellow")}.get(status, ("? ", "bold yellow"))
        out.append(mark, style=style)
        out.append((v.get("text") or "") + "\n")
    p = summary.get("probe")
    if p and p.get("low") is not None:
        from ftwizard.evaluation.compare import fmt_margin

        out.append(f"  probe {p['tuned_score']:.0%} vs base {p['baseline_score']:.0%}, "
                   f"{fmt_margin('probe_score', p['margin'])} (95% CI {fmt_margin('probe_score', p['low'])} to "
                   f"{fmt_margin('probe_score', p['high'])}, {p['n']} prompts): "
                   f"{'inside the noise' if p['status'] == 'inconclusive' else p['status']}\n", style="dim")
    judge = summary.get("judge")
    if isinstance(judge, dict) and judge.get("text"):
        out.append(f"  {judge['text']}\n")
    for w in summary.get("warnings", []):
        if v and w == v.get("text"):
            continue
        out.append("! " + w + "\n", style="yellow")
    for note in summary.get("notes", []):
        out.append("  " + note + "\n", style="dim")
    if summary.get("missing"):
        out.append("not evaluated yet: " + ", ".join(summary["missing"]) + "\n", style="dim")
    return out


def diff_text(reference: str, output: str | None) -> Text:
    """`output` with the words that differ from `reference` highlighted (red: not in the reference)."""
    if output is None:
        return Text("(not evaluated)", style="dim")
    ref_words, out_words = reference.split(), output.split()
    text = Text()
    sm = difflib.SequenceMatcher(a=ref_words, b=out_words, autojunk=False)
    for op, _a0, _a1, b0, b1 in sm.get_opcodes():
        chunk = " ".join(out_words[b0:b1])
        if not chunk:
            continue
        if text:
            text.append(" ")
        text.append(chunk, style="" if op == "equal" else "bold red")
    return text if output.strip() else Text("(empty output)", style="dim")


def sample_view(summary: dict[str, Any], index: int) -> Group | Text:
    samples = summary.get("samples") or []
    if not samples:
        return Text("no samples yet", style="dim")
    index = max(0, min(index, len(samples) - 1))
    s = samples[index]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    mark = {True: Text("  (right)", style="green"), False: Text("  (wrong)", style="red"), None: Text("")}
    grid.add_row("input", Text(s["input"]))
    grid.add_row("reference", Text(s["reference"], style="cyan"))
    grid.add_row("base", diff_text(s["reference"], s["base"]) + mark[s.get("base_correct")])
    if s.get("kshot_label"):
        grid.add_row(s["kshot_label"], diff_text(s["reference"], s.get("kshot")) + mark[s.get("kshot_correct")])
    tuned = summary.get("best_checkpoint") or "fine-tuned"
    grid.add_row(tuned, diff_text(s["reference"], s["tuned"]) + mark[s.get("tuned_correct")])
    head = Text(f"sample {index + 1} of {len(samples)} (row {s['row']}); words that differ from the reference in red",
                style="dim")
    return Group(head, grid)
