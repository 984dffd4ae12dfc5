"""Train: the pre-flight findings, then the detached trainer, then the live monitor.

Before `t` starts anything, the step runs the same pre-flight check as `ftwizard check`
(in a subprocess: it loads the tokenizer) and lists its findings: errors block until the
user confirms them in a dialog with a deliberate key, and a finding whose fix is a config
edit is applied with one key (`f`), as `check --fix` does. The start itself goes through
`ftwizard.training.launch.start_run`, whose gate reuses this report (or checks again if
the config changed since), so no start skips the check. Quitting leaves the run training.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ftwizard import advice
from ftwizard.tui.widgets.monitor import RunMonitor
from ftwizard.tui.workers import ReportsWorkerErrors

def plan_walltimes(state, rows: int | None, report=None) -> dict | None:
    """Expected wall time of the run and of a pilot on this machine, from the throughput measured here
    (`ftwizard.hardware.walltime`, cached per device and method). None when it cannot be said."""
    try:
        from ftwizard.hardware.walltime import estimate_walltime, load_calibration
    except ImportError:
        return None
    cfg = state.config
    try:
        cal = load_calibration(cfg)
        if cal is None:
            return {"full": None, "pilot": None, "calibrated": False}
        # the pre-flight's exact token lengths when there is a report (train and eval), else a guess from rows
        lengths = getattr(report, "train_lengths", None) if report is not None else None
        eval_lengths = getattr(report, "eval_lengths", None) if report is not None else None
        full = estimate_walltime(cfg, lengths, rows, eval_lengths=eval_lengths, calibration=cal)
        pilot = estimate_walltime(cfg, lengths, rows, eval_lengths=eval_lengths, max_steps=state.pilot_steps(rows),
                                  calibration=cal)
    except Exception:  # an estimate that cannot be made shows as unknown, never breaks the step
        return None
    return {"full": full, "pilot": pilot, "calibrated": True}


def walltime_short(times: dict | None, pilot_on: bool) -> str | None:
    """One short line for the plan panel: "about 50 min on this CPU (59.6 s/step); pilot about 25 min"."""
    if not times or not times.get("full"):
        return None
    full, pilot = times["full"], times.get("pilot")
    head = full.text.split(" (")[0] + f" ({full.s_per_step:.1f} s/step)"
    if pilot_on:
        return "pilot: " + head
    return head + (f"; pilot {pilot.text.split(' on ')[0]}" if pilot is not None else "")


def walltime_text(times: dict | None, pilot_on: bool, measuring: bool, failed: str | None) -> str:
    if measuring:
        return "measuring this machine's speed (a short real run, about a minute; once per machine)..."
    if failed:
        return f"unknown: the speed probe failed ({failed})"
    if not times or not times.get("full"):
        return "unknown until the first steps run (the monitor shows tokens/s and ETA)"
    full, pilot = times["full"], times.get("pilot")
    if pilot_on:
        return f"pilot: {full.text}"
    text = full.text
    if pilot is not None:
        text += f"; a pilot run (Tune step, Ctrl+L): {pilot.text.split(' on ')[0]}"
    return text


def objective_line(cfg) -> str:
    """"dpo: beta 0.1, loss sigmoid" — the objective and the preference settings it reads (config.objective_fields)."""
    from ftwizard.config import objective_fields

    p = cfg.preference
    parts = []
    for name in objective_fields(cfg.training.objective):
        value = getattr(p, name)
        if name == "label_smoothing" and not value or name == "reference" and value == "auto":
            continue  # at their defaults they say nothing
        parts.append(f"{name.replace('_', ' ').replace('loss type', 'loss')} {value:g}" if isinstance(value, float)
                     else f"{name.replace('_', ' ').replace('loss type', 'loss')} {value}")
    return cfg.training.objective.upper() + (": " + ", ".join(parts) if parts else "")


def shown_path(path) -> str:
    """A path as the summary shows it: relative to the working folder when inside it (short at 80 columns;
    the data paths themselves are absolute once the check has run)."""
    p = Path(path).expanduser()
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def shown_text(text: str) -> str:
    """A finding's text with the working folder's prefix dropped from the paths it names."""
    cwd = str(Path.cwd().resolve())
    return text.replace(cwd + "/", "") if cwd != "/" else text


SEVERITY_MARK = {"error": ("x", "bold red"), "warning": ("!", "yellow"), "info": ("-", "dim")}



def _kill_group(proc) -> None:
    """End a speed probe and the trainer it started (same process group); harmless if already gone."""
    import os
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()

class TrainStep(ReportsWorkerErrors, Vertical):
    TITLE = "Train"
    BINDINGS = [
        Binding("t", "start", "Start training"),
        Binding("f", "apply_fix", "Apply fix"),
        Binding("c", "recheck", "Check again", show=False),
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.monitor: RunMonitor | None = None
        self.starting = False
        self.report = None          # the latest pre-flight Report, for `checked_hash`
        self.checked_hash: str | None = None
        self.checking = False
        self.check_error: str | None = None
        self.rows: tuple | None = None
        self.walltime: dict | None = None   # plan_walltimes(): {"full", "pilot", "calibrated"}
        self.measuring = False
        self.measure_failed: str | None = None

    can_focus = True

    def compose(self) -> ComposeResult:
        yield Static(id="train-summary", classes="panel")
        yield Static(id="preflight-head")
        yield OptionList(id="preflight-findings")
        yield Static(id="preflight-detail", classes="form-help")

    def on_mount(self) -> None:
        self.query_one("#preflight-findings").display = False
        self.on_show()

    def on_show(self) -> None:
        if self.monitor is not None:
            return
        self._count()
        self.update_summary()
        self.recheck_if_changed()

    def focus_first(self) -> None:
        if self.monitor is not None:
            self.monitor.focus()
        elif self.query_one("#preflight-findings").display:
            self.query_one("#preflight-findings").focus()
        else:
            self.focus()

    # ---- facts (workers) ------------------------------------------------------------
    @work(thread=True, exclusive=True, group="count", exit_on_error=False)
    def _count(self) -> None:
        found = advice.count_examples(self.app.state.config.data.train)
        times = plan_walltimes(self.app.state, found[0] if found else None, self.report)
        self.app.call_from_thread(self._counted, found, times)

    def _counted(self, found, times) -> None:
        self.rows = found
        self.walltime = times
        self.update_summary()
        if times is not None and not times["calibrated"] and not self.measuring and self.measure_failed is None:
            self._measure(self.app.state.config)

    # ---- measuring this machine's speed (once per machine and method; a subprocess) ----------
    @work(thread=True, exclusive=True, group="measure", exit_on_error=False)
    def _measure(self, cfg) -> None:
        import subprocess
        import sys
        import tempfile

        self.measuring = True
        self.app.call_from_thread(self.update_summary)
        with tempfile.TemporaryDirectory(prefix="ftwizard-speed-") as tmp:
            path = Path(tmp) / "wizard.yaml"
            absolute = cfg
            try:
                from ftwizard.tui.preflight_check import absolute_paths

                absolute = absolute_paths(cfg)
            except OSError:
                pass
            absolute.save(path)
            # its own process group: the probe's trainer is a grandchild, and leaving the step must end both
            proc = subprocess.Popen([sys.executable, "-m", "ftwizard.hardware.walltime", str(path)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                    start_new_session=True)
            self._measure_proc = proc
            if getattr(self, "_gone", False):  # the step went away while the probe was starting
                _kill_group(proc)
            _out, err = proc.communicate()
        self.measuring = False
        if proc.returncode != 0:
            if proc.returncode > 0:  # < 0: killed because the step went away
                self.measure_failed = (err.strip().splitlines() or ["the speed probe failed"])[-1]
                self.app.call_from_thread(self.update_summary)
            return
        self.app.call_from_thread(self._count)

    def on_unmount(self) -> None:
        self._gone = True
        proc = getattr(self, "_measure_proc", None)
        if proc is not None:
            _kill_group(proc)

    def config_hash(self) -> str:
        from ftwizard.preflight.gate import config_hash
        from ftwizard.tui.preflight_check import absolute_paths

        return config_hash(absolute_paths(self.app.state.config))

    def recheck_if_changed(self) -> None:
        if not self.checking and self.checked_hash != self.config_hash():
            self.action_recheck()

    def action_recheck(self) -> None:
        from ftwizard.tui.preflight_check import absolute_paths

        self.checking = True
        self.check_error = None
        self.app.state.config = absolute_paths(self.app.state.config)
        self.update_preflight()
        self._check(self.app.state.config)

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def _check(self, cfg) -> None:
        from ftwizard.tui.preflight_check import CheckFailed, check_in_subprocess

        try:
            report = check_in_subprocess(cfg)
        except CheckFailed as e:
            self.app.call_from_thread(self._checked, None, str(e))
            return
        self.app.call_from_thread(self._checked, report, None)

    def _checked(self, report, error: str | None) -> None:
        self.checking = False
        self.check_error = error
        if report is not None:
            self.report = report
            self.checked_hash = report.facts.get("config_hash")
        self.update_preflight()
        self.refresh_bindings()
        if report is not None:
            self._count()  # the wall time again, now from the check's exact token lengths
        if self.checked_hash != self.config_hash() and error is None:
            self.recheck_if_changed()  # edited while the check ran

    # ---- drawing ----------------------------------------------------------------------
    def update_summary(self) -> None:
        if self.monitor is not None:
            return
        cfg = self.app.state.config
        t = Table.grid(padding=(0, 2))
        t.add_column(style="dim", no_wrap=True)
        t.add_column()
        t.add_row("model", f"{cfg.model.base} ({cfg.model.method})")
        if cfg.training.objective != "sft":
            t.add_row("objective", objective_line(cfg))
        if cfg.data.chat_template != "auto":
            t.add_row("template", f"{cfg.data.chat_template} (data.chat_template; saved with the tokenizer)")
        t.add_row("train", shown_path(cfg.data.train))
        t.add_row("eval", shown_path(cfg.data.eval) if cfg.data.eval else "(none)")
        rows, chars = (self.rows or (None, None))[:2] if self.rows else (None, None)
        plan = advice.training_plan(cfg, rows, chars)
        steps = f"{plan.steps:,}" if plan.steps is not None else "?"
        t.add_row("plan", f"{steps} steps, effective batch {plan.effective_batch}, lr {cfg.training.learning_rate:g}"
                  + ("  [pilot]" if self.app.state.pilot else ""))
        t.add_row("time", walltime_text(self.walltime, self.app.state.pilot, self.measuring, self.measure_failed))
        t.add_row("runs in", shown_path(cfg.runs_dir))
        head = Text("Press t to start. ", style="bold")
        head.append("The trainer runs in the background: quitting the wizard does not stop it.")
        parts = [head, t]
        if not Path(cfg.data.train).is_file():
            parts.append(Text(f"x training file not found: {cfg.data.train} (set it on the Data step)",
                              style="bold red"))
        if self.starting:
            parts.append(Text("starting the trainer...", style="bold yellow"))
        group = Table.grid()
        for p in parts:
            group.add_row(p)
        self.query_one("#train-summary", Static).update(group)

    def findings(self) -> list:
        if self.report is None:
            return []
        return self.report.errors + self.report.warnings

    def update_preflight(self) -> None:
        head = self.query_one("#preflight-head", Static)
        box = self.query_one("#preflight-findings", OptionList)
        if self.checking:
            head.update(Text("Pre-flight: checking the data and settings (the same check as `ftwizard check`)...",
                             style="yellow"))
        elif self.check_error:
            head.update(Text(f"x Pre-flight check failed: {self.check_error}. c checks again.", style="bold red"))
        elif self.report is not None:
            r = self.report
            if r.errors:
                head.update(Text.assemble(("Pre-flight: ", "bold"), (f"{len(r.errors)} error(s)", "bold red"),
                                          f", {len(r.warnings)} warning(s). Errors block the start until you "
                                          "confirm them (t asks). f applies the highlighted fix."))
            elif r.warnings:
                head.update(Text.assemble(("Pre-flight: ", "bold"), (f"{len(r.warnings)} warning(s)", "yellow"),
                                          ", no errors. f applies the highlighted fix; t starts anyway."))
            else:
                head.update(Text.assemble(("Pre-flight: ", "bold"), ("no errors or warnings", "green"),
                                          f" ({len(r.infos)} notes)."))
        shown = self.findings()  # while a new check runs, the last findings stay (the head says "checking")
        keep = box.highlighted
        box.clear_options()
        for i, f in enumerate(shown):
            mark, style = SEVERITY_MARK.get(f.severity, ("-", ""))
            label = Text.assemble((mark + " ", style), shown_text(f.message))
            if f.edit:
                label.append("  [f: fix]", style="bold")
            box.add_option(Option(label, id=str(i)))
        box.display = bool(shown)
        if shown:
            box.highlighted = min(keep or 0, len(shown) - 1)
        elif self.display and (self.app.focused is None or self.app.focused is box):
            self.focus()  # the step keeps the keys (t, c) when the list goes away (only while it is shown)
        self._detail()

    @on(OptionList.OptionHighlighted, "#preflight-findings")
    def _detail(self, event=None) -> None:
        detail = self.query_one("#preflight-detail", Static)
        box = self.query_one("#preflight-findings", OptionList)
        shown = self.findings()
        if box.highlighted is None or not shown or box.highlighted >= len(shown):
            detail.update("")
            return
        f = shown[box.highlighted]
        text = Text.assemble(("fix: ", "bold"), shown_text(f.fix))
        if f.edit:
            text.append("  (f sets " + ", ".join(f"{k} = {v}" for k, v in f.edit.items()) + ")", style="bold")
        detail.update(text)

    # ---- fixing and starting ------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        running = self.monitor is not None and self.monitor.watch.active
        if action == "start":  # again once the last run has ended (a new run, never a reuse)
            return not self.starting and not running
        if action == "apply_fix":
            if self.monitor is not None:
                return False
            return any(f.edit for f in self.findings())
        return True

    @on(OptionList.OptionSelected, "#preflight-findings")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_apply_fix()

    def action_apply_fix(self) -> None:
        from ftwizard.preflight.fix import apply_fixes

        box = self.query_one("#preflight-findings", OptionList)
        shown = self.findings()
        if box.highlighted is None or box.highlighted >= len(shown):
            return
        f = shown[box.highlighted]
        if not f.edit:
            self.notify(f"{f.rule} has no one-key fix: {f.fix}", severity="warning", timeout=8)
            return
        try:
            cfg, edits = apply_fixes(self.app.state.config, self.report, rules=[f.rule])
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            self.notify(f"could not apply the fix for {f.rule}: {e}", severity="error", timeout=10)
            return
        self.app.state.config = cfg
        self.notify("changed " + ", ".join(f"{k} to {v}" for k, v, _r in edits) + f" (fix for {f.rule})")
        self.update_summary()
        self.recheck_if_changed()

    async def action_start(self) -> None:
        if self.monitor is not None:
            await self.monitor.remove()
            self.monitor = None
            for w in ("#train-summary", "#preflight-head", "#preflight-detail"):
                self.query_one(w).display = True
            self.on_show()
        cfg = self.app.state.config
        if not Path(cfg.data.train).is_file():
            self.notify(f"training file not found: {cfg.data.train}", severity="error")
            return
        if self.checking or self.checked_hash != self.config_hash():
            self.recheck_if_changed()
            self.notify("The pre-flight check is still running; t starts once it has finished.", timeout=5)
            return
        if self.report is not None and self.report.errors:
            from ftwizard.tui.screens.modals import ConfirmErrorsScreen

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self._begin(force=True)

            self.app.push_screen(ConfirmErrorsScreen([f.message for f in self.report.errors]), confirmed)
            return
        self._begin(force=False)

    def _begin(self, force: bool) -> None:
        self.starting = True
        self.update_summary()
        self.refresh_bindings()
        self._start(self.app.state.config, self.report, force)

    @work(thread=True, exclusive=True, group="start", exit_on_error=False)
    def _start(self, cfg, report, force: bool) -> None:
        from ftwizard.errors import UserError
        from ftwizard.training.launch import start_run

        try:
            run, proc = start_run(cfg, detach=True, preflight=report, force=force, isolated=True)
        except UserError as e:
            self.app.call_from_thread(self._failed, e.what + (f" ({e.fix})" if e.fix else ""))
            return
        self.app.call_from_thread(self.attach, run, proc)

    def _failed(self, message: str) -> None:
        self.starting = False
        self.update_summary()
        self.refresh_bindings()
        self.notify(message, severity="error", timeout=10)

    def attach(self, run, proc=None) -> RunMonitor:
        self.starting = False
        for w in ("#train-summary", "#preflight-head", "#preflight-findings", "#preflight-detail"):
            self.query_one(w).display = False
        self.monitor = RunMonitor(run, id="train-monitor")
        self.monitor.proc = proc
        self.mount(self.monitor)
        self.monitor.focus()
        self.refresh_bindings()
        path = run.path.expanduser().resolve()
        self.notify(f"Run {run.name} started in {path}. It keeps running if you quit; re-attach from any "
                    f"folder with: ftwizard monitor {run.name}", timeout=10)
        return self.monitor

    def on_run_monitor_state_changed(self, event: RunMonitor.StateChanged) -> None:
        self.refresh_bindings()  # "t" comes back once the run has ended
