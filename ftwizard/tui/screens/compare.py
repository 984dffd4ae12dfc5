"""Compare runs, from the run picker (key c): tick runs on the left; the right shows their
loss curves overlaid, the results side by side and the config keys that differ.

The data comes from `ftwizard.compare.compare_runs` (run folders only) in a thread
worker; the drawing is compare_view's, the same as `ftwizard runs --compare` prints.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import SelectionList, Static

from ftwizard.rundir import RunDir
from ftwizard.tui.widgets.keys_footer import KeysFooter
from ftwizard.tui.workers import ReportsWorkerErrors


class OverlayPlot(Widget):
    DEFAULT_CSS = """
    OverlayPlot { height: 45%; min-height: 11; }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.cmp: dict | None = None
        self._cache: tuple[tuple[int, int], Text] | None = None

    def show(self, cmp: dict | None) -> None:
        self.cmp, self._cache = cmp, None
        self.refresh()

    def render(self) -> Text:
        from ftwizard.tui.widgets.compare_view import render_overlay

        if not self.cmp or not self.cmp["runs"]:
            return Text("tick two or more runs (space) to compare them", style="dim")
        size = (self.content_size.width, self.content_size.height)
        if self._cache is None or self._cache[0] != size:
            self._cache = (size, render_overlay(self.cmp, *size))
        return self._cache[1]


class CompareScreen(ReportsWorkerErrors, Screen):
    """Pick runs, see them side by side."""

    DEFAULT_CSS = """
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen #compare-runs { width: 24; height: 1fr; border: round $primary 50%; }
    CompareScreen #compare-right { width: 1fr; height: 1fr; }
    CompareScreen #compare-tables { height: auto; padding: 0 1; }
    CompareScreen #compare-title { height: 1; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "back", "Back"), Binding("q", "app.request_quit", "Quit")]

    def __init__(self, runs_dir: Path, selected: list[str] | None = None):
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.selected = list(selected or [])
        self._names: list[tuple[str, str]] = []  # (name, path) newest first

    def compose(self) -> ComposeResult:
        yield Static("Compare runs: space ticks a run; Esc goes back", id="compare-title")
        with Horizontal(id="compare-body"):
            yield SelectionList[str](id="compare-runs")
            with VerticalScroll(id="compare-right"):
                yield OverlayPlot(id="compare-plot")
                yield Static("", id="compare-legend")
                yield Static("", id="compare-tables")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#compare-runs", SelectionList).border_title = "runs"
        self._list_runs()

    @work(thread=True, exclusive=True, group="compare-list", exit_on_error=False)
    def _list_runs(self) -> None:
        found = []
        # the runs folder's runs, plus a picked run from elsewhere (the picker also lists indexed runs)
        candidates = [p for p in self.runs_dir.iterdir()] if self.runs_dir.is_dir() else []
        candidates += [Path(p) for p in self.selected if Path(p).parent.resolve() != self.runs_dir.resolve()]
        for p in candidates:
            run = RunDir(p)
            if p.is_dir() and run.exists():
                found.append((run.status().get("started_at") or 0, run.name, str(p)))
        found.sort(reverse=True)
        self.app.call_from_thread(self._fill, [(n, p) for _, n, p in found])

    def _fill(self, names: list[tuple[str, str]]) -> None:
        self._names = names
        paths = [p for _, p in names]
        chosen = [p for p in self.selected if p in paths]
        if len(chosen) < 2:  # the picked run and the one before it: a comparison at once
            for p in paths:
                if len(chosen) >= 2:
                    break
                if p not in chosen:
                    chosen.append(p)
        sl = self.query_one("#compare-runs", SelectionList)
        sl.clear_options()
        sl.add_options([(n, p, p in chosen) for n, p in names])
        sl.focus()
        self.selected = chosen
        self._load(list(chosen))

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        order = [p for _, p in self._names]
        self.selected = sorted(event.selection_list.selected, key=order.index)
        self._load(list(self.selected))

    @work(thread=True, exclusive=True, group="compare-load", exit_on_error=False)
    def _load(self, paths: list[str]) -> None:
        from ftwizard.compare import compare_runs

        cmp = compare_runs([RunDir(p) for p in paths]) if paths else None
        self.app.call_from_thread(self._show, cmp)

    def _show(self, cmp: dict | None) -> None:
        from rich.console import Group

        from ftwizard.tui.widgets.compare_view import diff_table, legend, results_table

        self.query_one(OverlayPlot).show(cmp)
        if not cmp:
            self.query_one("#compare-legend", Static).update("")
            self.query_one("#compare-tables", Static).update(Text("no run ticked", style="dim"))
            return
        self.query_one("#compare-legend", Static).update(legend(cmp))
        self.query_one("#compare-tables", Static).update(Group(results_table(cmp), Text(""), diff_table(cmp)))

    def action_back(self) -> None:
        self.app.pop_screen()


def open_compare(picker) -> None:
    """The run picker's `c` key: compare the run under the cursor with others."""
    from textual.widgets import DataTable

    table = picker.query_one(DataTable)
    selected = []
    if table.row_count:
        selected = [table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value]
    picker.app.push_screen(CompareScreen(picker.runs_dir, selected))
