"""Train: start the detached trainer through the engine's launcher, then watch it live.

The trainer is always its own process (`ftwizard.training.launch.start_run`, which
never imports torch here); this pane only starts it and mounts a `RunMonitor` on the
run folder. Quitting the app leaves the run training.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from ftwizard import advice
from ftwizard.tui.widgets.monitor import RunMonitor
from ftwizard.tui.workers import ReportsWorkerErrors


class TrainStep(ReportsWorkerErrors, Vertical):
    TITLE = "Train"
    BINDINGS = [Binding("t", "start", "Start training")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.monitor: RunMonitor | None = None
        self.starting = False

    def compose(self) -> ComposeResult:
        yield Static(id="train-summary", classes="panel")

    def on_mount(self) -> None:
        self.update_summary()

    def on_show(self) -> None:
        self.update_summary()

    def focus_first(self) -> None:
        if self.monitor is not None:
            self.monitor.focus()
        else:
            self.focus()

    can_focus = True

    def update_summary(self) -> None:
        if self.monitor is not None:
            return
        cfg = self.app.state.config
        t = Table.grid(padding=(0, 2))
        t.add_column(style="dim")
        t.add_column()
        t.add_row("model", f"{cfg.model.base} ({cfg.model.method})")
        t.add_row("train", str(cfg.data.train))
        t.add_row("eval", str(cfg.data.eval) if cfg.data.eval else "(none)")
        found = advice.count_examples(cfg.data.train)
        plan = advice.training_plan(cfg, found[0] if found else None, found[1] if found else None)
        steps = f"{plan.steps:,}" if plan.steps is not None else "?"
        t.add_row("plan", f"{steps} steps, effective batch {plan.effective_batch}, lr {cfg.training.learning_rate:g}"
                  + ("  [pilot]" if self.app.state.pilot else ""))
        t.add_row("runs in", str(cfg.runs_dir))
        problems = []
        if not Path(cfg.data.train).is_file():
            problems.append(f"training file not found: {cfg.data.train} (set it on the Hyperparameters step)")
        head = Text("Ready to train. ", style="bold")
        head.append("Press t to start. The trainer runs in the background: quitting the wizard or losing the "
                    "connection does not stop it; `ftwizard monitor RUN` re-attaches from any terminal.",
                    style="")
        parts = [head, t]
        for p in problems:
            parts.append(Text("x " + p, style="bold red"))
        if self.starting:
            parts.append(Text("starting the trainer...", style="bold yellow"))
        group = Table.grid()
        for p in parts:
            group.add_row(p)
        self.query_one("#train-summary", Static).update(group)

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "start":  # again once the last run has ended (a new run, never a reuse)
            return not self.starting and (self.monitor is None or not self.monitor.watch.active)
        return True

    async def action_start(self) -> None:
        if self.monitor is not None:
            await self.monitor.remove()
            self.monitor = None
            self.query_one("#train-summary").display = True
        cfg = self.app.state.config
        if not Path(cfg.data.train).is_file():
            self.notify(f"training file not found: {cfg.data.train}", severity="error")
            return
        self.starting = True
        self.update_summary()
        self.refresh_bindings()
        self._start()

    @work(thread=True, exclusive=True, group="start", exit_on_error=False)
    def _start(self) -> None:
        from ftwizard.errors import UserError
        from ftwizard.training.launch import start_run

        try:
            run, proc = start_run(self.app.state.config, detach=True)
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
        self.query_one("#train-summary").display = False
        self.monitor = RunMonitor(run, id="train-monitor")
        self.monitor.proc = proc
        self.mount(self.monitor)
        self.monitor.focus()
        self.refresh_bindings()
        self.notify(f"Run {run.name} started. It keeps running if you quit; re-attach with "
                    f"`ftwizard monitor {run.name}`.")
        return self.monitor

    def on_run_monitor_state_changed(self, event: RunMonitor.StateChanged) -> None:
        self.refresh_bindings()  # "t" comes back once the run has ended
