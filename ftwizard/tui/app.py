"""The wizard app, built by one factory (`make_app`) that the CLI and the tests share.

Entry points: `run_wizard` (plain `ftwizard`), `run_monitor` (`ftwizard monitor RUN`)
and `run_picker` (`ftwizard runs` in a terminal). Heavy libraries are never imported
here: steps call the domain layer, and training runs in its own process.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import ContentSwitcher
from textual.worker import Worker, WorkerState

from ftwizard.rundir import RunDir
from ftwizard.tui.screens.decide import DecideStep
from ftwizard.tui.screens.hyperparams import HyperparamsStep
from ftwizard.tui.screens.modals import ErrorScreen, QuitScreen, SaveConfigScreen
from ftwizard.tui.screens.runs import MonitorScreen, RunPickerScreen
from ftwizard.tui.screens.train import TrainStep
from ftwizard.tui.state import WizardState
from ftwizard.tui.themes import DEFAULT_THEME, discover_themes
from ftwizard.tui.widgets.monitor import RunMonitor
from ftwizard.tui.widgets.keys_footer import KeysFooter
from ftwizard.tui.widgets.steps import StepIndicator, short_name

def available_steps() -> list[type]:
    """The flow, in order. Every step exists; a step module is imported here, mounted on first visit."""
    from ftwizard.tui.screens.data import DataStep
    from ftwizard.tui.screens.evaluate import EvaluateStep
    from ftwizard.tui.screens.export import ExportStep
    from ftwizard.tui.screens.model import ModelStep
    from ftwizard.tui.screens.try_ import TryStep

    return [DecideStep, ModelStep, DataStep, HyperparamsStep, TrainStep, EvaluateStep, TryStep, ExportStep]


class WizardScreen(Screen):
    BINDINGS = [
        Binding("ctrl+n", "next_step", "Next", priority=True),
        Binding("ctrl+p", "previous_step", "Back", priority=True),
        Binding("ctrl+s", "save_config", "Save", priority=True),
        Binding("ctrl+q", "app.request_quit", "Quit", priority=True),
    ]

    def __init__(self, steps: list[type]):
        super().__init__()
        self.step_classes = steps

    def compose(self) -> ComposeResult:
        yield StepIndicator([c.TITLE for c in self.step_classes], short=[short_name(c) for c in self.step_classes],
                            id="steps")
        with ContentSwitcher(initial="step-0", id="step-switcher"):
            yield self.step_classes[0](id="step-0", classes="step")  # later steps mount on first visit
        yield KeysFooter()

    @property
    def index(self) -> int:
        return self.query_one(StepIndicator).current

    def current_step(self):
        return self.query_one(f"#step-{self.index}")

    async def go(self, index: int) -> None:
        index = max(0, min(index, len(self.step_classes) - 1))
        switcher = self.query_one(ContentSwitcher)
        if not switcher.query(f"#step-{index}"):
            await switcher.mount(self.step_classes[index](id=f"step-{index}", classes="step"))
        self.query_one(StepIndicator).current = index
        switcher.current = f"step-{index}"
        step = self.current_step()
        self.call_after_refresh(step.focus_first)

    async def action_next_step(self) -> None:
        await self.go(self.index + 1)

    async def action_previous_step(self) -> None:
        await self.go(self.index - 1)

    def action_save_config(self) -> None:
        self.app.action_save_config()


class WizardApp(App[int]):
    CSS_PATH = "wizard.tcss"
    TITLE = "ftwizard"
    # ctrl+p is "previous step" (ctrl+b would clash with tmux); themes cycle with ctrl+t instead.
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+q", "request_quit", "Quit", priority=True, show=False),
        Binding("ctrl+t", "next_theme", "Theme", show=False),
    ]

    def __init__(self, state: WizardState, *, mode: str = "wizard", run_path: Path | None = None,
                 runs_dir: Path | None = None, theme: str | None = None, theme_dirs: list[Path] | None = None,
                 blink: bool = True):
        super().__init__()
        self.state = state
        self.mode = mode
        self.run_path = run_path
        self.runs_dir = runs_dir
        self.blink = blink
        self._theme_name = theme
        self._theme_dirs = theme_dirs
        self.first_paint_s: float | None = None
        self.picker_everywhere = True  # `ftwizard runs`: every indexed run; --runs-dir: that folder only
        self.file_themes: list[str] = []
        self.started_at = time.perf_counter()

    def on_mount(self) -> None:
        self._load_themes()
        if self.mode == "monitor":
            self.push_screen(MonitorScreen(RunDir(self.run_path)))
        elif self.mode == "picker":
            self.push_screen(RunPickerScreen(self.runs_dir or Path(self.state.config.runs_dir),
                                             everywhere=self.picker_everywhere))
        else:
            self.push_screen(WizardScreen(available_steps()))

    def on_ready(self) -> None:
        self.first_paint_s = time.perf_counter() - self.started_at

    # ---- themes ----------------------------------------------------------------
    def _load_themes(self) -> None:
        themes, problems = discover_themes(self._theme_dirs)
        self.file_themes = [t.name for t in themes]
        for theme in themes:
            self.register_theme(theme)
        wanted = self._theme_name or DEFAULT_THEME
        for p in problems:
            self.notify(f"{p}; using the default theme instead", severity="warning", timeout=8)
        if wanted in self.available_themes:
            self.theme = wanted
        elif DEFAULT_THEME in self.available_themes:
            if self._theme_name:
                self.notify(f"theme {wanted!r} not found; using {DEFAULT_THEME}", severity="warning")
            self.theme = DEFAULT_THEME

    def action_next_theme(self) -> None:
        names = self.file_themes or [self.theme]
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    # ---- config ------------------------------------------------------------------
    def action_save_config(self, then_quit: bool = False) -> None:
        def done(path: Path | None) -> None:
            if path is None:
                return
            try:
                saved = self.state.save(path)
            except OSError as e:
                self.push_screen(ErrorScreen("Could not save the config", f"{path}: {e.strerror or e}"))
                return
            self.notify(f"Saved {saved.resolve()}. Train from it: ftwizard train {saved}")
            if then_quit:
                self._quit(self.active_runs())

        self.push_screen(SaveConfigScreen(self.state.default_save_path()), done)

    # ---- quitting ----------------------------------------------------------------
    def active_runs(self) -> list[tuple[str, str]]:
        """(name, absolute folder) of every run shown here that is still training. Cheap: no file is read."""
        out: list[tuple[str, str]] = []
        for screen in self.screen_stack:
            for mon in screen.query(RunMonitor):
                if mon.watch.active and all(mon.run.name != n for n, _p in out):
                    out.append((mon.run.name, str(mon.run.path.expanduser().resolve())))
        return out

    def action_request_quit(self) -> None:
        """The dialog shows at once (nothing slow runs before it): runs keep training, answers may be saved."""
        if isinstance(self.screen, QuitScreen):
            return
        runs = self.active_runs()
        unsaved = self.mode == "wizard" and self.state.unsaved()
        if not runs and not unsaved:
            self.exit(0)
            return

        def done(choice: str | None) -> None:
            if choice == "save":
                self.action_save_config(then_quit=True)
            elif choice == "quit":
                self._quit(runs)

        self.push_screen(QuitScreen(runs, unsaved=unsaved), done)

    def _quit(self, runs: list[tuple[str, str]]) -> None:
        if runs:
            self.exit(0, message=f"Run {', '.join(n for n, _p in runs)} keeps training in the background "
                                 f"({runs[0][1]}). Re-attach: ftwizard monitor {runs[0][0]}")
        else:
            self.exit(0)

    # ---- one place for worker failures (see ftwizard.tui.workers) ------------------------
    def report_worker_error(self, worker: Worker) -> None:
        err = worker.error
        self.push_screen(ErrorScreen("Something went wrong", f"{type(err).__name__}: {err}"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.report_worker_error(event.worker)


def make_app(config: str | Path | None = None, runs_dir: str | Path | None = None, *,
             monitor: str | Path | None = None, picker: bool = False, theme: str | None = None,
             theme_dirs: list[Path] | None = None, blink: bool = True) -> WizardApp:
    """The one way to build the app (CLI and tests). Raises UserError for a bad --config."""
    state = WizardState.create(None if monitor is not None or picker else config, runs_dir)
    mode = "monitor" if monitor is not None else "picker" if picker else "wizard"
    return WizardApp(state, mode=mode, run_path=Path(monitor) if monitor is not None else None,
                     runs_dir=Path(runs_dir) if runs_dir is not None else None, theme=theme,
                     theme_dirs=theme_dirs, blink=blink)


def run_wizard(config: str | None = None, runs_dir: str | None = None) -> int:
    app = make_app(config, runs_dir)
    app.run()
    return int(app.return_code or 0)


def run_monitor(run_path: str) -> int:
    app = make_app(monitor=run_path)
    app.run()
    return int(app.return_code or 0)


def run_picker(runs_dir: str, everywhere: bool = True) -> int:
    """The runs picker: every run in the per-user index (any folder) plus `runs_dir`'s; with
    everywhere=False (`--runs-dir`), that folder's runs only."""
    app = make_app(runs_dir=runs_dir, picker=True)
    app.picker_everywhere = everywhere
    app.run()
    return int(app.return_code or 0)
