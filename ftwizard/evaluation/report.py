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
           "accuracy", "macro_f1", "rouge_l", "probe_score"}
SHORT = {"json_parse_rate": "JSON", "schema_match": "schema", "field_precision": "fld P",
         "field_recall": "fld R", "field_f1": "fld F1", "exact_match": "exact", "eval_loss": "loss",
         "perplexity": "ppl", "probe_score": "probe", "macro_f1": "macro F1", "accuracy": "acc",
         "rouge_l": "ROUGE-L", "chrf": "chrF", "bleu": "BLEU"}


def fmt_value(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in PERCENT:
        return f"{value * 100:.0f}%"
    if name == "perplexity":
        return f"{value:.2f}" if value < 1000 else f"{value:.3g}"
    if name in ("chrf", "bleu"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def metrics_table(summary: dict[str, Any]) -> Table:
    """Models as rows, metrics as columns; the best value of each column in bold green with a star."""
    table = Table(title=f"held-out {summary['task']} metrics (best marked *)", title_justify="left",
                  header_style="bold", pad_edge=False, box=box.SIMPLE_HEAD,
                  padding=(0, 0, 0, 1), collapse_padding=True)
    table.add_column("model", no_wrap=True)
    cols = [m["name"] for m in summary["metrics"]]
    for c in cols:
        table.add_column(SHORT.get(c, c), justify="right")
    spread = {c: len({m["metrics"].get(c) for m in summary["models"]}) > 1 for c in cols}
    for m in summary["models"]:
        label = Text(m["label"])
        if m["id"] == summary.get("best_checkpoint"):
            label.append("  best", style="bold green")
        cells = []
        for c in cols:
            v = m["metrics"].get(c)
            is_best = summary["best"].get(c) == m["id"] and spread[c]  # no star when every row ties
            cells.append(Text(fmt_value(c, v) + ("*" if is_best else " "), style="bold green" if is_best else ""))
        table.add_row(label, *cells)
    return table


def legend(summary: dict[str, Any]) -> Table:
    """What each column measures, one line each."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold", no_wrap=True)
    grid.add_column(style="dim")
    for m in summary["metrics"]:
        grid.add_row(SHORT.get(m["name"], m["name"]), m["description"])
    return grid


def verdict_text(summary: dict[str, Any]) -> Text:
    out = Text()
    v = summary.get("verdict")
    if v:
        primary = summary["primary_metric"]
        good = v["beats_baseline"]
        out.append("v " if good else "! ", style="bold green" if good else "bold yellow")
        out.append(f"{v['tuned']} {SHORT.get(primary, primary)} {fmt_value(primary, v['tuned_score'])} "
                   f"against {v['baseline']} {fmt_value(primary, v['baseline_score'])}\n")
    for w in summary.get("warnings", []):
        out.append("! " + w + "\n", style="yellow")
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
    tuned = summary.get("best_checkpoint") or "fine-tuned"
    grid.add_row(tuned, diff_text(s["reference"], s["tuned"]) + mark[s.get("tuned_correct")])
    head = Text(f"sample {index + 1} of {len(samples)} (row {s['row']}); words that differ from the reference in red",
                style="dim")
    return Group(head, grid)
