"""Runs side by side, as Rich renderables: the loss curves overlaid on one plot, the eval
metrics and losses in one table, and only the config keys that differ in another.

Shared by the wizard's compare screen and `ftwizard runs --compare` in a terminal, so
both show the same thing. The plot reuses the monitor's rendering choices (loss_plot:
plotext drawn to text, log10 losses labelled in loss values, whole-step ticks); here
with one colour per run, train losses as lines and eval losses as points.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ftwizard.compare import fmt, metric_names, short_path

COLOURS = ["cyan", "orange", "green", "magenta", "yellow", "red", "blue", "white"]  # plotext's names
RICH = {"orange": "dark_orange"}  # the one plotext name Rich spells differently


def colour(i: int) -> str:
    """Run i's colour as plotext names it."""
    return COLOURS[i % len(COLOURS)]


def style(i: int) -> str:
    """Run i's colour as Rich names it."""
    return RICH.get(colour(i), colour(i))


def _log(ys: list[float]) -> list[float]:
    return [math.log10(max(y, 1e-8)) for y in ys]


def render_overlay(cmp: dict[str, Any], width: int, height: int) -> Text:
    """Every run's train loss (line) and eval loss (points) on one log-scale plot."""
    from ftwizard.tui.widgets.loss_plot import set_axes

    series = []
    for i, r in enumerate(cmp["runs"]):
        for kind in ("curve", "eval_curve"):
            xs, ys = r[kind]["steps"], r[kind]["loss"]
            pts = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and y > 0 and math.isfinite(y)]
            if pts:
                series.append((kind, colour(i), [p[0] for p in pts], _log([p[1] for p in pts])))
    if not series:
        return Text("no losses logged yet in these runs", style="dim")
    if width < 20 or height < 5:
        return Text("(too small to plot)", style="dim")
    import plotext  # ~0.3 s: only when there is something to draw

    plotext.terminal.limit(False, False)  # the size asked for, not clamped to the (absent) terminal's 80 columns
    f = plotext.figure
    f.clear()
    f.theme("colorless")
    f.plot_size(width, height)
    f.legend(active=False)
    for kind, col, xs, ys in series:
        sig = f.signal(xs, ys, marker=plotext.marker("hd" if kind == "curve" else "x", pixel=col))
        f.draw(sig.lines() if kind == "curve" else sig)
    set_axes(f, [x for s in series for x in s[2]], [y for s in series for y in s[3]], width, height)
    try:
        return Text.from_ansi(f.build().string(), no_wrap=True)
    finally:
        plotext.terminal.limit()  # plotext's state is global: give other plots (the loss plot) their default back


def legend(cmp: dict[str, Any]) -> Text:
    t = Text("loss (log scale), line: train, x: eval   ", style="dim")
    for i, r in enumerate(cmp["runs"]):
        t.append("■ ", style=style(i))
        t.append(r["name"] + "  ")
    return t


def _best(values: list[Any], higher: bool = False) -> int | None:
    nums = [(v, i) for i, v in enumerate(values) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) < 2:
        return None
    return (max if higher else min)(nums)[1]


def results_table(cmp: dict[str, Any]) -> Table:
    """Losses and eval metrics: one column per run, the best value of each row in bold."""
    runs = cmp["runs"]
    t = Table(title=None, box=None, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    t.add_column("result", no_wrap=True)
    for i, r in enumerate(runs):
        t.add_column(Text(r["name"], style=style(i)), justify="right", no_wrap=True, overflow="ellipsis")
    rows: list[tuple[str, list[Any], bool]] = [
        ("state", [r["state"] for r in runs], False),
        ("steps", [r["steps"] for r in runs], False),
        ("final loss", [r["final_loss"] for r in runs], False),
        ("best loss", [r["best_loss"] for r in runs], False),
        ("final eval loss", [r["final_eval_loss"] for r in runs], False),
        ("best eval loss", [r["best_eval_loss"] for r in runs], False),
    ]
    for name in metric_names(cmp):
        rows.append((name, [((r.get("eval") or {}).get("metrics") or {}).get(name) for r in runs], True))
    for label, values, higher in rows:
        best = _best(values, higher) if label not in ("state", "steps") else None
        cells = [Text(fmt(v), style="bold" if i == best else "") for i, v in enumerate(values)]
        t.add_row(label, *cells)
    return t


def diff_table(cmp: dict[str, Any]) -> Table | Text:
    diff = cmp["config_diff"]
    if not diff:
        return Text("configs identical", style="dim")
    t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    t.add_column("config (keys that differ)", no_wrap=True)  # no count: it grows with every new config field
    for i, r in enumerate(cmp["runs"]):
        t.add_column(Text(r["name"], style=style(i)), justify="right", no_wrap=True, overflow="ellipsis")
    for key, values in diff.items():
        t.add_row(key, *[fmt(short_path(v)) for v in values])
    return t


def compare_renderable(cmp: dict[str, Any], width: int, plot_height: int) -> Group:
    """The whole comparison for a terminal `width` columns wide: plot, legend, results, config diff."""
    return Group(render_overlay(cmp, width, plot_height), legend(cmp), Text(""), results_table(cmp), Text(""),
                 diff_table(cmp))
