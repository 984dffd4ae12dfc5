"""Export: pick a finished run, the formats, the merged dtype and the GGUF quantisations;
run the export worker; show each format's state, size and progress with an ETA, every
check's full reason (wrapped, never cut), the cross-format consistency report and the
`ollama create` command.

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
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Checkbox, DataTable, Label, Log, Select, Static

from ftwizard.errors import UserError
from ftwizard.export.launch import ExportRequest, outcome, start
from ftwizard.export.manifest import read_manifest
from ftwizard.tui.widgets.checkbox import GlyphCheckbox
from ftwizard.tui.workers import ReportsWorkerErrors

class LineLog(Log):
    """Textual's Log measures each write's width in a thread worker that calls back into the app; one
    started by the export's last lines outlived the wizard at exit (NoActiveAppError). The export writes
    a line at a time, so measure here, on the UI thread."""

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        if lines:
            from rich.cells import cell_len

            self._update_maximum_width(updates, max(cell_len(self._process_line(line)) for line in lines))


FORMAT_KEYS = ("adapter", "merged", "gguf", "ollama", "lora-gguf")
DEFAULT_ON = {"adapter", "merged", "gguf", "ollama"}
QUANT_KEYS = ("f16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
K_QUANTS = {"q4_k_m", "q5_k_m", "q6_k"}
DTYPES = [("auto (fp32 on a CPU)", "auto"), ("fp32", "fp32"), ("fp16", "fp16"), ("bf16", "bf16")]
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


def _eta(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def progress_cell(e: dict) -> str:
    p = e.get("progress")
    if e.get("state") == "running" and p:
        return f"{p['done']}/{p['total']} ETA {_eta(p.get('eta_s', 0))}"
    if e.get("seconds") is not None and e.get("state") != "running":
        return f"{e['seconds']:.0f} s"
    return ""


def details_text(m: dict) -> Text:
    """Every export's checks and reasons in full, for a widget that wraps (never cut at a column)."""
    t = Text()
    for key, e in m.get("exports", {}).items():
        if e.get("state") == "failed":
            t.append(f"{key} failed: ", style="bold red")
            t.append(f"{e.get('reason', '')}\n")
        for c in e.get("checks") or []:
            if e.get("state") == "failed" and not c.get("ok"):
                continue  # already in the reason
            t.append(f"{key} ", style="bold")
            t.append("passed" if c.get("ok") else "did not pass", style="green" if c.get("ok") else "red")
            t.append(f": {c['name']}: {c['detail']}\n", style="dim" if c.get("ok") else "")
        for w in e.get("warnings", []):
            t.append(f"{key} warning: ", style="yellow")
            t.append(f"{w}\n")
    cons = m.get("consistency")
    if cons:
        t.append("consistency: ", style="bold")
        t.append(f"{cons.get('summary', '')}\n", style="green" if cons.get("consistent") else "bold red")
        for f in cons.get("findings", []):
            if not f.get("ok"):
                t.append(f"  {f['check']}: {f['detail']}\n", style="red")
    return t


class ExportStep(ReportsWorkerErrors, Vertical):
    TITLE = "Export"
    BINDINGS = [Binding("ctrl+e", "export", "Export", priority=True),
                Binding("ctrl+r", "refresh_runs", "Refresh runs", priority=True)]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.proc: subprocess.Popen | None = None

    def compose(self) -> ComposeResult:
        from ftwizard.export import runtime

        has_runtime = runtime.available()
        with VerticalScroll(id="export-body"):
            with Horizontal(classes="form-row"):
                yield Label("run", classes="field-name")
                yield Select([], id="export-run", prompt="no finished run yet", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("formats", classes="field-name")
                for key in FORMAT_KEYS:
                    yield GlyphCheckbox(key, key in DEFAULT_ON, id=f"fmt-{key}", compact=True,
                                   disabled=key == "lora-gguf" and not has_runtime)
            with Horizontal(classes="form-row"):
                yield Label("merged dtype", classes="field-name")
                yield Select(DTYPES, value="auto", id="export-dtype", allow_blank=False, compact=True)
                yield GlyphCheckbox("replace existing", False, id="export-force", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("GGUF quant", classes="field-name")
                for q in QUANT_KEYS:
                    yield GlyphCheckbox(q, q == "q8_0", id=f"quant-{q}", compact=True,
                                   disabled=q in K_QUANTS and not has_runtime)
            help_ = ("Ctrl+E exports to runs/<name>/export/. Each file answers the trained model's prompts "
                     "(GGUF in llama.cpp); consistency.json compares them.")
            if not has_runtime:
                help_ += (f" No llama.cpp runtime here: k-quants and lora-gguf need `{runtime.INSTALL_COMMAND}` "
                          "(builds it once, ~10 min).")
            yield Static(Text(help_, style="dim"), classes="form-help", id="export-help")
            yield Static(id="export-summary")
            table = DataTable(id="export-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("export", "state", "size", "progress")
            yield table
            yield Static(id="export-details")
            yield LineLog(id="export-log", max_lines=400)

    def on_mount(self) -> None:
        self.query_one("#export-log", Log).styles.height = 8
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
        if not self.is_mounted or not self.query("#export-table"):
            return  # the step went away while its export worker was still reporting
        table = self.query_one("#export-table", DataTable)
        table.clear()
        summary = self.query_one("#export-summary", Static)
        details = self.query_one("#export-details", Static)
        if not m:
            summary.update(Text("not exported yet", style="dim"))
            details.update("")
            return
        head = Text(f"export {m['state']}", style=STATE_STYLES.get(m["state"], "bold red" if m["state"] == "failed" else "green"))
        running = [e for e in m.get("exports", {}).values() if e.get("state") == "running" and e.get("progress")]
        if running:
            p = running[-1]["progress"]
            head.append(f"   {p.get('phase', '')}, about {_eta(p.get('eta_s', 0))} left in this format", style="yellow")
        olla = m.get("exports", {}).get("ollama", {})
        if olla.get("state") == "ok" and olla.get("command"):
            head.append(f"\n{olla['command']}", style="bold")
        opts = m.get("options", {})
        if opts.get("merged_dtype_reason"):
            head.append(f"\n{opts['merged_dtype_reason']}", style="dim")
        for w in m.get("warnings", []):
            head.append(f"\n! {w}", style="yellow")
        summary.update(head)
        for key, e in m.get("exports", {}).items():
            b = e.get("bytes") or 0
            size = f"{b / 1e6:.1f} MB" if b >= 100_000 else f"{b / 1e3:.1f} kB" if b else ""
            table.add_row(key, Text(e["state"], style=STATE_STYLES.get(e["state"], "")), size, progress_cell(e))
        details.update(details_text(m))

    # ---- export (worker process) ---------------------------------------------------------
    def request(self) -> ExportRequest:
        run = self.query_one("#export-run", Select).value
        if not isinstance(run, str):
            raise UserError("no finished run to export", fix="train one in the Train step (or `ftwizard train`)")
        fmts = [k for k in FORMAT_KEYS if self.query_one(f"#fmt-{k}", Checkbox).value]
        if not fmts:
            raise UserError("choose at least one format")
        quants = [q for q in QUANT_KEYS if self.query_one(f"#quant-{q}", Checkbox).value]
        if "gguf" in fmts and not quants:
            raise UserError("choose at least one GGUF quantisation", fix="q8_0 is near-lossless at half of f16")
        dtype = self.query_one("#export-dtype", Select).value
        return ExportRequest(Path(run), ",".join(fmts), ",".join(quants) or "q8_0",
                             force=self.query_one("#export-force", Checkbox).value,
                             dtype=None if dtype in ("auto", Select.BLANK) else str(dtype))

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
        app = self.app
        for line in proc.stdout:  # type: ignore[union-attr]
            if not self._report(app, self._log_line, line.rstrip("\n")):
                break  # the wizard closed: the export process was ended by on_unmount
            m = read_manifest(req.out_dir())
            if m:
                self._report(app, self.show_manifest, m)
        try:
            m = outcome(proc, err, req)
        except UserError as e:
            self._report(app, self._show_error, e)
            return
        self._report(app, self.show_manifest, m)

    def _report(self, app, fn, *args) -> bool:
        """Run `fn` on the UI thread; False once the step or the app is gone (the export process may still be
        printing its last lines while the app shuts down: writing then raised NoActiveAppError)."""
        if not self.is_attached or not app.is_running:
            return False
        try:
            app.call_from_thread(fn, *args)
        except RuntimeError:  # the app stopped between the check and the call
            return False
        return True

    def _log_line(self, line: str) -> None:
        if self.is_attached:
            self.query_one("#export-log", Log).write_line(line)

    def _show_error(self, e: UserError) -> None:
        if self.is_attached:
            self.query_one("#export-summary", Static).update(Text(e.render(), style="bold red"))
