"""Rich renderings of lint reports, stats and previews (for the CLI; Textual shows Rich renderables too)."""

from __future__ import annotations

from collections import defaultdict

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ftwizard.data.lint import LintReport
from ftwizard.data.preview import Preview
from ftwizard.data.rules import ERROR, INFO, RULES, WARNING

STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan"}
TRAINED = "bold green"
PROMPT = "dim"


def lint_report(report: LintReport, per_rule: int = 5) -> Group:
    """Errors first, grouped by rule, a few rows each with the offending snippet, then a summary."""
    parts = []
    listed = defaultdict(list)
    for f in report.findings:
        listed[f.rule].append(f)
    for severity in (ERROR, WARNING, INFO):
        rules = sorted({r for r in report.counts if listed.get(r) and listed[r][0].severity == severity}
                       | {r for r in report.counts if not listed.get(r) and RULES[r].severity == severity})
        if not rules:
            continue
        table = Table(box=box.SIMPLE_HEAD, expand=True, show_lines=False, title_justify="left",
                      title=Text(f"{severity}s", style=STYLE[severity]))
        table.add_column("row", justify="right", no_wrap=True, width=7)
        table.add_column("field", overflow="fold", max_width=24)
        table.add_column("problem", overflow="fold", ratio=1)
        for r in rules:
            n = report.counts[r]
            table.add_row("", "", Text.assemble((r, STYLE[severity]), f"  {RULES[r].title}", (f"  ({n:,})", "bold")))
            items = sorted(listed.get(r, []), key=lambda f: (f.file or "", f.row or 0))
            for f in items[:per_rule]:
                msg = Text(f.message)
                if f.snippet:
                    msg.append(f"\n  {f.snippet}", style="dim")
                row = "" if f.row is None else (f"eval {f.row}" if f.file else str(f.row))
                table.add_row(row, f.field or "", msg)
            shown = min(len(items), per_rule)
            if n > shown:
                where = "--json lists them" if len(items) == n else f"--json lists {len(items):,} of them"
                table.add_row("", "", Text(f"... and {n - shown:,} more ({where})", style="dim"))
            table.add_row("", "", Text(f"fix: {RULES[r].hint}", style="italic"))
        parts.append(table)
    parts.append(summary_line(report))
    return Group(*parts)


def summary_line(report: LintReport) -> Text:
    errs = report.error_count
    warns = sum(n for r, n in report.counts.items() if _sev(report, r) == WARNING)
    t = Text()
    t.append(f"{report.path}: ", style="bold")
    t.append(f"{report.rows:,} rows, format {report.format or 'unknown'}, {report.valid_rows:,} usable; ")
    t.append(f"{errs:,} error(s)", style=STYLE[ERROR] if errs else "green")
    t.append(", ")
    t.append(f"{warns:,} warning(s)", style=STYLE[WARNING] if warns else "green")
    tok = report.stats.get("tokens")
    if tok:
        t.append(f"; tokens p50 {tok['p50']:,}, p95 {tok['p95']:,}, max {tok['max']:,}")
        if tok.get("max_length"):
            t.append(f", {tok['truncated_rows']:,} over {tok['max_length']:,}")
        t.append(f"; {tok['tokens_per_epoch']:,} tokens per epoch")
    t.append(f" ({report.elapsed_s:.1f} s)", style="dim")
    return t


def _sev(report: LintReport, rule_id: str) -> str:
    return report._severity_of(rule_id)


def stats_view(stats: dict, width: int = 40) -> Group:
    table = Table(box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("rows", f"{stats['rows']:,} ({stats['valid_rows']:,} usable)")
    table.add_row("formats", ", ".join(f"{k} {v:,}" for k, v in stats["formats"].items()) or "-")
    if stats.get("turns"):
        t = stats["turns"]
        table.add_row("turns", f"min {t['min']}, mean {t['mean']}, max {t['max']}")
    if stats.get("roles"):
        table.add_row("roles", ", ".join(f"{k} {v:,}" for k, v in stats["roles"].items()))
    parts = [table]
    tok = stats.get("tokens")
    if tok:
        table.add_row("tokens", f"min {tok['min']:,}, mean {tok['mean']:,}, p50 {tok['p50']:,}, p90 {tok['p90']:,}, "
                      f"p95 {tok['p95']:,}, p99 {tok['p99']:,}, max {tok['max']:,}")
        if tok.get("max_length"):
            table.add_row("max length", f"{tok['max_length']:,}: {tok['truncated_rows']:,} rows truncated "
                          f"({tok['truncated_tokens']:,} tokens lost)")
        table.add_row("tokens per epoch", f"{tok['tokens_per_epoch']:,}")
        parts.append(histogram(tok, width))
    return Group(*parts)


def histogram(tok: dict, width: int = 40) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), title="token lengths", title_justify="left")
    table.add_column("bin", justify="right", no_wrap=True)
    table.add_column("bar", no_wrap=True)
    table.add_column("rows", justify="right")
    peak = max((b["rows"] for b in tok["histogram"]), default=1) or 1
    limit = tok.get("max_length")
    for b in tok["histogram"]:
        over = limit is not None and b["from"] > limit
        bar = "█" * round(width * b["rows"] / peak) or ("▏" if b["rows"] else "")
        table.add_row(f"{b['from']:,}-{b['to']:,}", Text(bar, style="red" if over else "green"), f"{b['rows']:,}")
    return table


def preview_view(preview: Preview) -> Group:
    """The templated text with trained (assistant) tokens highlighted, and what the row has wrong."""
    parts = []
    header = Text(f"row {preview.row}", style="bold")
    header.append(f"  format {preview.fmt or 'unknown'}")
    r = preview.rendered
    if r is not None:
        header.append(f"  {r.tokens:,} tokens, {r.trained_tokens:,} trained")
    parts.append(header)
    if r is not None:
        legend = Text.assemble(("trained (assistant) ", TRAINED), ("  not trained (prompt, template) ", PROMPT))
        parts.append(legend)
        body = Text()
        for seg in r.segments:
            body.append(seg.text, style=TRAINED if seg.trained else PROMPT)
        if preview.rejected is not None:  # a preference pair: the chosen side above, the rejected one below
            parts.append(Text("chosen:", style="bold green"))
        parts.append(body)
    if preview.rejected is not None:
        parts.append(Text("rejected:", style="bold red"))
        body = Text()
        for seg in preview.rejected.segments:
            body.append(seg.text, style=TRAINED if seg.trained else PROMPT)
        parts.append(body)
    for p in preview.problems:
        parts.append(Text(p, style="yellow"))
    return Group(*parts)
