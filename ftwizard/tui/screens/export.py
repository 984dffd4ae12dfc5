"""Export: pick a finished run and the formats, run the export worker, show each
format's state, size and check, and the `ollama create` command.

The export loads torch, transformers and peft, so it runs as `python -m
ftwizard.export.worker` (through `ftwizard.export.launch`); this step only streams
its progress lines and reads the manifest it writes. The app never imports torch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, DataTable, Input, Label, Log, Select, Static

from ftwizard.errors import UserError
from ftwizard.export.launch import ExportRequest, outcome, start
from ftwizard.export.manifest import read_manifest
from ftwizard.tui.workers import ReportsWorkerErrors

FORMAT_KEYS = ("adapter", "merged", "gguf", "ollama")
STATE_STYLES = {"ok": "green", "failed": "bold red", "running": "yellow", "skipped": "dim"}


def finished_runs(runs_dir: Path) -> list[Path]:
    """Run folders with a final adapter/ or model/, newest first."""
    from ftwizard.rundir import list_runs

    out = []
    for s in list_runs(runs_dir):
        p = Path(runs_dir) / s.name
        if (p / "adapter" / "adapter_config.json").is_file() or (p / "model" / "config.json").is_file():
            out.append(p)
    return out


class ExportStep(ReportsWorkerErrors, Vertical):
    TITLE = "Export"
    BINDINGS = [Binding("ctrl+e", "export", "Export", priority=True),
                Binding("ctrl+r", "refresh_runs", "Refresh runs", priority=True)]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.proc: subprocess.Popen | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("run", classes="field-name")
            yield Select([], id="export-run", prompt="no finished run yet", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("formats", classes="field-name")
            for key in FORMAT_KEYS:
                yield Checkbox(key, True, id=f"fmt-{key}", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("GGUF quant", classes="field-name")
            yield Input("q8_0", id="export-quant", compact=True, placeholder="f16, q8_0 (comma list)")
            yield Checkbox("replace existing (--force)", False, id="export-force", compact=True)
        yield Static(Text("Ctrl+E exports into runs/<name>/export/. Each file is loaded back and checked against "
                          "the fine-tuned model; a failed check marks that export failed, with the reason. "
                          "q4_k_m needs llama.cpp's llama-quantize on PATH.", style="dim"), classes="form-help")
        yield Static(id="export-summary")
        table = DataTable(id="export-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("export", "state", "size", "check")
        yield table
        yield Log(id="export-log", max_lines=400)

    def on_mount(self) -> None:
        self.action_refresh_runs()

    def focus_first(self) -> None:
        self.query_one("#export-run", Select).focus()

    def on_unmount(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    # ---- runs and manifest -------------------------------------------------------------
    def action_refresh_runs(self) -> None:
        runs = finished_runs(Path(self.app.state.config.runs_dir))
        sel = self.query_one("#export-run", Select)
        sel.set_options([(p.name, str(p)) for p in runs])
        if runs:
            sel.value = str(runs[0])

    @on(Select.Changed, "#export-run")
    def _run_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.show_manifest(read_manifest(Path(event.value) / "export"))

    def show_manifest(self, m: dict | None) -> None:
        table = self.query_one("#export-table", DataTable)
        table.clear()
        summary = self.query_one("#export-summary", Static)
        if not m:
            summary.update(Text("not exported yet", style="dim"))
            return
        head = Text(f"export {m['state']}", style=STATE_STYLES.get(m["state"], "bold red" if m["state"] == "failed" else "green"))
        olla = m.get("exports", {}).get("ollama", {})
        if olla.get("state") == "ok" and olla.get("command"):
            head.append(f"   {olla['command']}", style="bold")
        for w in m.get("warnings", []):
            head.append(f"\n! {w}", style="yellow")
        summary.update(head)
        for key, e in m.get("exports", {}).items():
            size = f"{e['bytes'] / 1e6:.1f} MB" if e.get("bytes") else ""
            checks = e.get("checks") or []
            detail = e.get("reason") if e.get("state") != "ok" else "; ".join(c["detail"] for c in checks)
            table.add_row(key, Text(e["state"], style=STATE_STYLES.get(e["state"], "")), size, (detail or "")[:160])

    # ---- export (worker process) ---------------------------------------------------------
    def request(self) -> ExportRequest:
        run = self.query_one("#export-run", Select).value
        if not isinstance(run, str):
            raise UserError("no finished run to export", fix="train one in the Train step (or `ftwizard train`)")
        fmts = [k for k in FORMAT_KEYS if self.query_one(f"#fmt-{k}", Checkbox).value]
        if not fmts:
            raise UserError("choose at least one format")
        return ExportRequest(Path(run), ",".join(fmts), self.query_one("#export-quant", Input).value.strip() or "q8_0",
                             force=self.query_one("#export-force", Checkbox).value)

    def action_export(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.app.notify("an export is already running")
            return
        try:
            req = self.request()
            from ftwizard.export.pipeline import parse_formats, parse_quants, prepare_check

            parse_formats(req.formats)
            parse_quants(req.quant)
            prepare_check(req.out_dir(), req.force)
        except UserError as e:
            self.query_one("#export-summary", Static).update(Text(e.render(), style="bold red"))
            return
        self.query_one("#export-log", Log).clear()
        self.query_one("#export-summary", Static).update(Text("exporting...", style="yellow"))
        self.run_export(req)

    @work(thread=True, exclusive=True, group="export")
    def run_export(self, req: ExportRequest) -> None:
        proc, err = start(req, stdout=subprocess.PIPE)
        self.proc = proc
        log = self.query_one("#export-log", Log)
        for line in proc.stdout:  # type: ignore[union-attr]
            self.app.call_from_thread(log.write_line, line.rstrip("\n"))
            m = read_manifest(req.out_dir())
            if m:
                self.app.call_from_thread(self.show_manifest, m)
        try:
            m = outcome(proc, err, req)
        except UserError as e:
            self.app.call_from_thread(self.query_one("#export-summary", Static).update, Text(e.render(), style="bold red"))
            return
        self.app.call_from_thread(self.show_manifest, m)
