"""Re-attach: the monitor screen for one run, and a picker over a runs folder."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ftwizard.rundir import RunDir
from ftwizard.tui.runwatch import format_duration, format_number
from ftwizard.tui.widgets.keys_footer import KeysFooter
from ftwizard.tui.screens.train import shown_path
from ftwizard.tui.widgets.tables import fill_table
from ftwizard.tui.widgets.monitor import RunMonitor
from ftwizard.tui.workers import ReportsWorkerErrors


class MonitorScreen(Screen):
    """`ftwizard monitor RUN`: one run, live, whatever its state."""

    BINDINGS = [Binding("q", "app.request_quit", "Quit"), Binding("escape", "back", "Back", show=False)]

    def __init__(self, run: RunDir):
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        yield RunMonitor(self.run, id="monitor")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.sub_title = str(self.run.path)
        self.query_one(RunMonitor).focus()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:  # opened from the picker: go back to it
            self.app.pop_screen()


@dataclass
class _Row:
    name: str
    path: Path
    state: str
    step: int | None
    max_steps: int | None
    loss: float | None
    eval_loss: float | None
    started_at: float | None


COLUMNS = ["run", "state", "step", "loss", "eval loss", "started", "folder"]


class RunPickerScreen(ReportsWorkerErrors, Screen):
    """`ftwizard runs` in a terminal: pick a run to watch."""

    BINDINGS = [Binding("q", "app.request_quit", "Quit"), Binding("enter", "open", "Watch", show=True),
                Binding("c", "compare", "Compare")]  # h15: the compare screen (tui/screens/compare.py)

    def action_compare(self) -> None:
        from ftwizard.tui.screens.compare import open_compare

        open_compare(self)

    def __init__(self, runs_dir: Path, everywhere: bool = True):
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.everywhere = everywhere  # every run in the per-user index (any folder), plus runs_dir's
        self.loaded = False  # True once the first listing is on screen (tests and snapshots wait for it)
        self._told: set[str] = set()

    def _title(self) -> str:
        if self.everywhere:
            return "Your runs, from any folder (the run index).  Enter: watch"
        return f"Runs in {self.runs_dir}.  Enter: watch"

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="picker-title")
        table = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._load()
        self.set_interval(2.0, self._load)

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _load(self) -> None:
        from ftwizard.rundir import list_runs

        notes: list[str] = []
        if self.everywhere:
            from ftwizard.runindex import indexed_runs

            summaries, notes = indexed_runs([self.runs_dir])
        else:
            summaries = list_runs(self.runs_dir) if self.runs_dir.is_dir() else []
        runs = [_Row(r.name, Path(r.path), r.state, r.step, r.max_steps, r.loss, r.eval_loss, r.started_at)
                for r in summaries]
        runs.sort(key=lambda r: r.started_at or 0, reverse=True)
        self.app.call_from_thread(self._fill, runs, notes)

    def _fill(self, runs: list["_Row"], notes: list[str] | None = None) -> None:
        table = self.query_one(DataTable)
        now = time.time()
        rows = []
        for r in runs:
            step = f"{r.step}/{r.max_steps}" if r.step is not None and r.max_steps else str(r.step or "-")
            age = format_duration(now - r.started_at) + " ago" if r.started_at else "-"
            rows.append(([r.name, r.state, step, format_number(r.loss), format_number(r.eval_loss), age,
                          shown_path(r.path.parent)], str(r.path)))
        fill_table(table, COLUMNS, rows)  # widths from the rows, at once: no race with the table's idle sizing
        self.loaded = True
        for note in notes or []:  # a run folder moved or deleted: pruned from the index, said once
            if note not in self._told:
                self._told.add(note)
                self.notify(note, severity="warning", timeout=10)
        if not runs:
            self.query_one("#picker-title", Static).update(
                "No runs yet (start one with the wizard's Train step or `ftwizard train`).")

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.app.push_screen(MonitorScreen(RunDir(key)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(MonitorScreen(RunDir(event.row_key.value)))
