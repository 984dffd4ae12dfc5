"""Data: pick the training file, see its format, lint table, token lengths and rows.

Lint counts tokens with the model's tokenizer, which is heavy (transformers), so it
runs as a subprocess (`ftwizard lint FILE --json`) and the TUI reads its JSON report:
the app never imports transformers. Rows are rendered here from the file itself
(roles in colour; the turns the loss is computed on are marked). Fix and split call
`ftwizard.data.fix` in a worker; they write new files and never touch the original.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import Suggester
from textual.widgets import DataTable, Input, Label, Static
from ftwizard.tui.widgets.tables import fill_table
from ftwizard.tui.workers import ReportsWorkerErrors

ROLE_STYLES = {"system": "magenta", "user": "cyan", "assistant": "green"}
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}


class PathSuggester(Suggester):
    """Completes the last path component from the folder's entries (like a shell's Tab)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        p = Path(value).expanduser()
        folder, stem = (p, "") if value.endswith(os.sep) else (p.parent, p.name)
        try:
            names = sorted(e.name + (os.sep if e.is_dir() else "") for e in os.scandir(folder)
                           if e.name.startswith(stem) and not e.name.startswith("."))
        except OSError:
            return None
        if not names:
            return None
        return value + names[0][len(stem):]


def lint_command(cfg, path: Path) -> list[str]:
    cmd = [sys.executable, "-m", "ftwizard", "lint", str(path), "--json", "--max-length", str(cfg.data.max_length)]
    if cfg.data.eval and Path(cfg.data.eval).is_file() and Path(cfg.data.eval) != path:
        cmd += ["--eval", str(cfg.data.eval)]
    if cfg.data.task_type != "other":
        cmd += ["--task-type", cfg.data.task_type]
    if cfg.model.base == "embedded" or Path(cfg.model.base).is_dir():
        cmd += ["--model", cfg.model.base]
    else:
        cmd += ["--no-tokens"]  # a hub model: no tokenizer download from here
    if cfg.data.system_prompt:
        cmd += ["--system-prompt", cfg.data.system_prompt]
    cmd += ["--objective", cfg.training.objective]  # preference data is judged against the run's objective
    if cfg.data.chat_template != "auto" and "--no-tokens" not in cmd:
        cmd += ["--chat-template", str(cfg.data.chat_template)]  # rendered as the trainer will
    return cmd


OBJECTIVE_WORDS = {"sft": "supervised fine-tuning (SFT)", "dpo": "DPO", "orpo": "ORPO", "kto": "KTO"}


def objective_fits(objective: str, implied: str) -> bool:
    """Pairs train with DPO, ORPO or KTO (KTO splits each pair into a good and a bad answer); KTO rows with KTO
    only; anything else with SFT (preference_guidance.OBJECTIVES[...].data says the same in words)."""
    if implied == "dpo":
        return objective in ("dpo", "orpo", "kto")
    return objective == implied


def tools_template() -> str:
    """The built-in chat template that renders tools (ChatML)."""
    from ftwizard.data.chat_templates import BUILTIN, DEFAULT

    return next((n for n, t in BUILTIN.items() if t.tools), DEFAULT)


def data_kind_text(report: dict, cfg) -> tuple[Text, tuple[str, str] | None]:
    """What the file holds beyond its format (preference pairs, KTO rows, tool calls), the objective that
    implies, and the one config edit to offer (Ctrl+G): the objective the data needs, or a chat template that
    renders tools when the model's own cannot. None when nothing needs changing."""
    from ftwizard.data.formats import implied_objective

    objective = cfg.training.objective

    stats = report.get("stats") or {}
    fmt = report.get("format")
    implied = implied_objective(fmt)
    out = Text()
    pref = stats.get("preference") or {}
    if fmt == "preference":
        n = pref.get("pairs") or report.get("valid_rows") or 0
        out.append(f"preference pairs ({n:,} prompts, each a chosen and a rejected answer): for DPO or ORPO",
                   style="bold")
        share = pref.get("chosen_longer_share")
        if isinstance(share, (int, float)):
            out.append(f"; chosen is longer in {share * 100:.0f}%", style="dim")
    elif fmt == "kto":
        good, bad = pref.get("desirable"), pref.get("undesirable")
        out.append("KTO rows: single answers labelled good or bad", style="bold")
        if isinstance(good, int) and isinstance(bad, int):
            out.append(f" ({good:,} desirable, {bad:,} undesirable)", style="dim")
    tools = stats.get("tools")
    if tools:
        names = tools.get("names") or {}
        top = ", ".join(f"{k} {v}" for k, v in list(names.items())[:3]) + (", ..." if len(names) > 3 else "")
        out.append(f"tool calling: {tools.get('rows', 0):,} rows, {tools.get('calls', 0):,} calls to "
                   f"{len(names)} tools ({top}); SFT trains the calls, not the tool results", style="bold")
    offer = None if objective_fits(objective, implied) else ("training.objective", implied)
    no_tools = any(f["rule"] == "tools.template_unsupported" for f in report.get("errors", []))
    if not out and offer is None and not no_tools:
        return out, None
    out.append("\n")
    if offer is not None:
        out.append(f"! the objective is {objective}; this data is for {OBJECTIVE_WORDS[implied]}. ", style="bold yellow")
        out.append(f"Ctrl+G sets training.objective: {implied}", style="bold")
        if implied == "dpo":
            out.append(" (or ORPO: Tune step)", style="dim")
    elif no_tools and cfg.data.chat_template != tools_template():
        template = tools_template()
        offer = ("data.chat_template", template)
        out.append("! the model's template cannot render tools: ", style="bold yellow")
        out.append(f"Ctrl+G sets data.chat_template: {template}", style="bold")
        out.append(" (renders them; its tokens train)", style="dim")
    else:
        out.append(f"objective {objective}: fits this data", style="green")
    return out, offer


def histogram_text(tokens: dict, width: int = 40) -> Text:
    """Token lengths as horizontal bars, bins past max_length in red."""
    bins = tokens.get("histogram") or []
    max_len = tokens.get("max_length")
    if not bins:
        return Text("no token counts", style="dim")
    top = max(b["rows"] for b in bins) or 1
    out = Text()
    for b in bins[-12:]:
        over = max_len is not None and b["to"] > max_len
        bar = "█" * max(1 if b["rows"] else 0, round(b["rows"] / top * width))
        out.append(f"{b['from']:>6}-{b['to']:<6}", style="dim")
        out.append(bar, style="red" if over else "green")
        out.append(f" {b['rows']}\n")
    out.append(f"p50 {tokens.get('p50')}  p95 {tokens.get('p95')}  max {tokens.get('max')}  "
               f"max_length {max_len}: {tokens.get('truncated_rows', 0)} rows truncated", style="dim")
    return out


def preference_preview(value: dict, cfg) -> Text:
    """A preference pair (prompt, then the chosen and the rejected answer) or a KTO row (prompt, answer, label)."""
    from ftwizard.data.preference import PairError, normalise_row, side_text

    out = Text()
    try:
        kind, row = normalise_row(value, None, cfg.data.system_prompt)
    except PairError as e:
        return Text(f"x {e}" + (f" ({e.field})" if getattr(e, "field", None) else ""), style="red")
    for m in row["prompt"]:
        out.append(f"{m['role']}\n", style="bold " + ROLE_STYLES.get(m["role"], ""))
        out.append("  " + m["content"][:1000].replace("\n", "\n  ") + "\n")
    if kind == "pairs":
        sides = [("chosen (preferred)", "bold green", row["chosen"]), ("rejected", "bold red", row["rejected"])]
    else:
        label = "desirable (label true)" if row["label"] else "undesirable (label false)"
        sides = [(f"completion: {label}", "bold green" if row["label"] else "bold red", row["completion"])]
    for title, style, turns in sides:
        out.append(title + "\n", style=style)
        out.append("▌ " + side_text(turns)[:1200].replace("\n", "\n  ") + "\n", style="underline")
    out.append("▌ = scored by the objective (the prompt is context only)\n", style="dim")
    return out


class DataStep(ReportsWorkerErrors, Vertical):
    TITLE = "Data"
    BINDINGS = [
        Binding("ctrl+o", "lint", "Lint", priority=True),
        Binding("ctrl+f", "fix", "Fix copy", priority=True),
        Binding("ctrl+x", "split", "Split", priority=True),
        Binding("ctrl+g", "use_suggestion", "Use suggestion", priority=True),
        # priority: the findings table would otherwise take PgUp/PgDn for its own scrolling
        Binding("pageup", "row(-1)", "Prev row", show=False, priority=True),
        Binding("pagedown", "row(1)", "Next row", show=False, priority=True),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.report: dict | None = None
        self.row = 1
        self.busy = False
        self._lint_proc: subprocess.Popen | None = None
        self.offer: tuple[str, str] | None = None  # (config field, value) this data needs (Ctrl+G sets it)

    def compose(self) -> ComposeResult:
        cfg = self.app.state.config
        with Horizontal(classes="form-row"):
            yield Label("training file", classes="field-name")
            yield Input(str(cfg.data.train), id="data-path", compact=True, suggester=PathSuggester())
        yield Static(Text("Enter lints it (Right completes a path). ^f: fixed copy, ^x: train/eval split "
                          "(new files; originals never change)", style="dim"), classes="form-help")
        yield Static(id="data-files", classes="form-help")
        yield Static(id="data-summary")
        yield Static(id="data-kind")
        with Horizontal(id="data-body"):
            table = DataTable(id="lint-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("sev", "rule", "row", "message")
            table.border_title = "findings"
            yield table
            with VerticalScroll(id="data-side"):
                yield Static(id="data-finding")
                yield Static(id="data-preview")
                yield Static(id="data-hist")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = self.app.blink
        self.query_one("#data-side").border_title = "row"
        self.query_one("#data-kind").display = False
        self.show_files()

    def show_files(self) -> None:
        """Which files the run will use: the training file and the held-out (eval) file."""
        cfg = self.app.state.config
        eval_file = str(cfg.data.eval) if cfg.data.eval else "none (Ctrl+X splits one off)"
        self.query_one("#data-files", Static).update(Text.assemble(
            ("in use: ", "bold"), "train ", (str(cfg.data.train), "bold"), "  eval ", (eval_file, "bold")))

    def work_dir(self) -> Path:
        """Where new data files go: next to the config, else the folder the wizard runs in (never next to
        the bundled sample data, which may sit inside an installed package)."""
        path = self.app.state.saved_to or self.app.state.config_path
        return Path(path).expanduser().resolve().parent if path is not None else Path.cwd()

    def on_unmount(self) -> None:
        """A lint still running is only a reader of the file: stop it rather than wait for it."""
        if self._lint_proc is not None and self._lint_proc.poll() is None:
            self._lint_proc.kill()

    def on_show(self) -> None:
        # Lint when the step is first looked at (not at app start, nor when Ctrl+N only passes by).
        self.set_timer(0.5, self._lint_if_still_shown)

    def _lint_if_still_shown(self) -> None:
        if self.display and self.report is None and not self.busy:
            self.action_lint()

    def focus_first(self) -> None:
        self.query_one("#data-path", Input).focus()

    # ---- lint (subprocess) --------------------------------------------------------
    @on(Input.Submitted, "#data-path")
    def _submitted(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        if not path.is_file():
            self.query_one("#data-summary", Static).update(Text(f"x no such file: {path}", style="bold red"))
            return
        self.app.state.config.data.train = path.resolve()
        self.show_files()
        self.action_lint()

    def action_lint(self) -> None:
        path = Path(self.app.state.config.data.train)
        if not path.is_file():
            self.query_one("#data-summary", Static).update(Text(f"x training file not found: {path}",
                                                                style="bold red"))
            return
        if self._lint_proc is not None and self._lint_proc.poll() is None:
            self._lint_proc.kill()  # a newer file wins
        self.busy = True
        self.query_one("#data-summary", Static).update(Text(f"linting {path.name} (tokenizer in a subprocess)...",
                                                            style="yellow"))
        self._lint(path)
        self.action_row(0)

    @work(thread=True, exclusive=True, group="lint", exit_on_error=False)
    def _lint(self, path: Path) -> None:
        cmd = lint_command(self.app.state.config, path)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        self._lint_proc = proc
        stdout, stderr = proc.communicate()
        if proc.returncode < 0:  # killed: the app is closing or a newer lint replaced it
            return
        try:
            report = json.loads(stdout)
        except json.JSONDecodeError:
            msg = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])
            self.app.call_from_thread(self._lint_failed, " ".join(msg[-3:]))
            return
        self.app.call_from_thread(self._show_report, path, report)

    def _lint_failed(self, message: str) -> None:
        self.busy = False
        self.query_one("#data-summary", Static).update(Text(f"x lint failed: {message}", style="bold red"))

    def _show_report(self, path: Path, report: dict) -> None:
        self.busy = False
        if "error" in report and "rows" not in report:
            self._lint_failed(report.get("error", "unknown error"))
            return
        self.report = report
        n_err, n_warn = len(report.get("errors", [])), len(report.get("warnings", []))
        counts = report.get("counts", {})
        total_err = sum(v for k, v in counts.items() if any(f["rule"] == k for f in report.get("errors", [])))
        summary = Text.assemble(
            (path.name, "bold"), f"  format {report.get('format') or '?'}  ",
            f"{report.get('rows', 0):,} rows, {report.get('valid_rows', 0):,} usable  ",
            (f"{total_err or n_err} errors ", "bold red" if n_err else "green"),
            (f"{sum(counts.values()) - (total_err or n_err)} warnings/notes", "yellow" if n_warn else "dim"),
        )
        leaks = [f for f in report.get("warnings", []) + report.get("errors", []) if f["rule"].startswith("eval.")]
        from ftwizard.data.formats import implied_objective

        wrong_objective = not objective_fits(self.app.state.config.training.objective,
                                             implied_objective(report.get("format")))
        if report.get("ok") and not leaks and not wrong_objective:
            summary.append("  ready to train", style="bold green")
        elif leaks:
            summary.append(f"  not ready: {leaks[0]['message']}", style="bold yellow")
        self.query_one("#data-summary", Static).update(summary)
        self.show_kind()
        table = self.query_one("#lint-table", DataTable)
        findings = report.get("errors", []) + report.get("warnings", []) + report.get("infos", [])
        rows = []
        for i, f in enumerate(findings):
            sev = {"error": "err", "warning": "warn"}.get(f["severity"], f["severity"])
            rows.append(([Text(sev, style=SEVERITY_STYLES.get(f["severity"], "")), f["rule"],
                          str(f["row"]) if f.get("row") else "-", f["message"]], str(i)))
        fill_table(table, ["sev", "rule", "row", "message"], rows, max_width={3: 200})
        tokens = (report.get("stats") or {}).get("tokens")
        width = max(10, self.query_one("#data-side").content_size.width - 22)
        self.query_one("#data-hist", Static).update(histogram_text(tokens, width) if tokens else "")

    # ---- what the data is for: the objective ---------------------------------------------
    def show_kind(self) -> None:
        kind = self.query_one("#data-kind", Static)
        if self.report is None:
            kind.display = False
            self.offer = None
        else:
            text, self.offer = data_kind_text(self.report, self.app.state.config)
            kind.update(text)
            kind.display = bool(text)
        self.refresh_bindings()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "use_suggestion":
            return self.offer is not None
        return True

    def action_use_suggestion(self) -> None:
        """The edit this data needs: the objective it implies (its defaults follow: WizardState.set_objective),
        or a chat template that renders tools."""
        if self.offer is None:
            return
        path, value = self.offer
        notes = []
        if path == "training.objective":
            notes = self.app.state.set_objective(value)
        else:
            section, name = path.split(".", 1)
            setattr(getattr(self.app.state.config, section), name, value)
        self.notify(f"{path}: {value}" + (": " + "; ".join(notes) if notes else ""), timeout=8)
        self.action_lint()  # lint again: it judges the data against the objective and the template

    # ---- jump to a row and page through rows ------------------------------------------
    def _findings(self) -> list[dict]:
        r = self.report or {}
        return r.get("errors", []) + r.get("warnings", []) + r.get("infos", [])

    @on(DataTable.RowHighlighted, "#lint-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        findings = self._findings()
        if event.row_key is None or event.row_key.value is None or not findings:
            return
        f = findings[int(event.row_key.value)]
        where = f"row {f['row']}" if f.get("row") else "whole file"
        self.query_one("#data-finding", Static).update(Text.assemble(
            (f"{f['rule']} ({where}): ", "bold"), f["message"], ("\nfix: " + f["hint"], "dim") if f.get("hint") else "",
            "\n"))

    @on(DataTable.RowSelected, "#lint-table")
    def _jump(self, event: DataTable.RowSelected) -> None:
        if self.report is None:
            return
        f = self._findings()[int(event.row_key.value)]
        if f.get("row"):
            self.row = int(f["row"])
            self.action_row(0)

    def action_row(self, delta: int) -> None:
        self.row = max(1, self.row + delta)
        self._preview(Path(self.app.state.config.data.train), self.row)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _preview(self, path: Path, row: int) -> None:
        from ftwizard.data.checks import check_row
        from ftwizard.data.formats import ConversionError, to_messages
        from ftwizard.data.preview import find_record
        from ftwizard.errors import UserError

        cfg = self.app.state.config
        try:
            rec = find_record(path, row)
        except UserError as e:
            self.app.call_from_thread(self._show_preview, row, Text(e.what + (f" ({e.fix})" if e.fix else ""),
                                                                     style="yellow"))
            return
        out = Text()
        problems = [p.message for p in rec.problems]
        messages = None
        from ftwizard.data.formats import PREFERENCE_FORMATS, detect_format

        if isinstance(rec.value, dict) and detect_format(rec.value) in PREFERENCE_FORMATS:
            self.app.call_from_thread(self._show_preview, row, preference_preview(rec.value, cfg))
            return
        if rec.value is not None:
            res = check_row(rec.value, cfg.data.system_prompt)
            problems += [p.message + (f" ({p.field})" if p.field else "") for p in res.problems]
            if isinstance(rec.value, dict):
                try:
                    messages = to_messages(rec.value, None, cfg.data.system_prompt)
                except ConversionError as e:
                    problems.append(str(e))
            if res.fmt == "text" and isinstance(rec.value, dict):
                out.append(str(rec.value.get("text", ""))[:2000] + "\n", style="underline")
                out.append("(raw text: every token is trained)\n", style="dim")
        if messages:
            trained_roles = {"assistant"} if cfg.data.assistant_only_loss else {"system", "user", "assistant"}
            for m in messages:
                role = m.get("role", "?")
                out.append(f"{role}\n", style="bold " + ROLE_STYLES.get(role, ""))
                content = str(m.get("content") or "")[:1500]
                calls = m.get("tool_calls") or []
                if calls:
                    from ftwizard.data.tools import call_text

                    content = "\n".join([content] * bool(content) + ["call " + call_text(c) for c in calls])
                if role == "tool":
                    content = "result: " + content
                trained = role in trained_roles
                out.append(("▌ " if trained else "  ") + content.replace("\n", "\n  ") + "\n",
                           style="underline" if trained else "")
            out.append("▌ = trained on (assistant_only_loss)\n" if cfg.data.assistant_only_loss
                       else "▌ = trained on (every turn)\n", style="dim")
        for p in problems:
            out.append(f"x {p}\n", style="red")
        if rec.value is None and not problems:
            out.append("(empty)", style="dim")
        self.app.call_from_thread(self._show_preview, row, out)

    def _show_preview(self, row: int, text: Text) -> None:
        side = self.query_one("#data-side")
        side.border_title = f"row {row}  (PgUp/PgDn)"
        self.query_one("#data-preview", Static).update(text)

    # ---- fix and split (new files only) ----------------------------------------------
    def action_fix(self) -> None:
        self._fix(Path(self.app.state.config.data.train))

    @work(thread=True, exclusive=True, group="fix", exit_on_error=False)
    def _fix(self, src: Path) -> None:
        from ftwizard.data.fix import fix_file
        from ftwizard.errors import UserError

        out = self.work_dir() / (src.name.split(".")[0] + ".fixed.jsonl")
        try:
            rep = fix_file(src, out, dedup="near", drop_invalid=True, to_messages=True,
                           system_prompt=self.app.state.config.data.system_prompt, force=False)
        except UserError as e:
            self.app.call_from_thread(self.notify, e.what + (f" ({e.fix})" if e.fix else ""), severity="warning",
                                      timeout=10)
            return
        kept = sum(rep.rows_out.values()) if isinstance(rep.rows_out, dict) else rep.rows_out
        self.app.call_from_thread(self._use_files, out, None,
                                  f"Wrote a fixed copy, {out}: kept {kept:,} of {rep.rows_in:,} rows")

    def action_split(self) -> None:
        """A split replaces the configured eval file: ask first when there is one."""
        cfg = self.app.state.config
        src = Path(cfg.data.train)
        if cfg.data.eval:
            from ftwizard.tui.screens.modals import ConfirmScreen

            def answer(yes: bool | None) -> None:
                if yes:
                    self._split(src)

            self.app.push_screen(ConfirmScreen(
                f"The config already uses the held-out file {cfg.data.eval}.",
                f"Split {src.name} and use its new held-out part instead? The old file is kept, only the "
                "config changes.", yes="y: split and replace", no="n / Esc: keep the current eval file"), answer)
            return
        self._split(src)

    @work(thread=True, exclusive=True, group="fix", exit_on_error=False)
    def _split(self, src: Path) -> None:
        from ftwizard.data.fix import split_file
        from ftwizard.errors import UserError

        try:
            rep = split_file(src, self.work_dir(), eval_fraction=0.1, drop_invalid=True)
        except UserError as e:
            self.app.call_from_thread(self.notify, e.what + (f" ({e.fix})" if e.fix else ""), severity="warning",
                                      timeout=10)
            return
        n = rep.rows_out if isinstance(rep.rows_out, dict) else {}
        self.app.call_from_thread(
            self._use_files, Path(rep.outputs["train"]), Path(rep.outputs["eval"]),
            f"Split {src.name} into {n.get('train', 0):,} training rows ({rep.outputs['train']}) and "
            f"{n.get('eval', 0):,} held-out rows ({rep.outputs['eval']})")

    def _use_files(self, train: Path, eval_file: Path | None, message: str) -> None:
        cfg = self.app.state.config
        cfg.data.train = train.resolve()
        if eval_file is not None:
            cfg.data.eval = eval_file.resolve()
        inp = self.query_one("#data-path", Input)
        with inp.prevent(Input.Changed):
            inp.value = str(cfg.data.train)
        self.notify(message + ". The config now uses " + ("them." if eval_file is not None else "it."), timeout=10)
        self.show_files()
        self.action_lint()
