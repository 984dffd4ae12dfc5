"""The wizard through Textual's Pilot, keys only, at 80x24 and a larger size."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Static

from ftwizard.config import load_config
from ftwizard.rundir import RunDir
from ftwizard.tui.app import make_app
from ftwizard.tui.screens.modals import QuitScreen, SaveConfigScreen
from ftwizard.tui.themes import DEFAULT_THEME, theme_dirs
from ftwizard.tui.widgets.keys_footer import KeysFooter
from ftwizard.tui.widgets.loss_plot import LossPlot
from ftwizard.tui.widgets.monitor import RunMonitor

sys.path.insert(0, str(Path(__file__).parent))
from tui_fakerun import write_history  # noqa: E402

FAKERUN = Path(__file__).parent / "tui_fakerun.py"
SIZES = [(80, 24), (120, 40)]


def text_of(widget) -> str:
    """The plain text a Static shows (whatever renderable it holds)."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    content = getattr(widget, "content", None)
    console.print(content if content is not None else widget.render())
    return console.export_text()


async def wait_for(pilot, cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        if cond():
            return
    raise AssertionError("condition not met in time")


async def tab_to(pilot, widget, limit: int = 80) -> None:
    """Press Tab until `widget` has focus (keyboard only)."""
    for _ in range(limit):
        if pilot.app.focused is widget:
            return
        await pilot.press("tab")
    raise AssertionError(f"could not tab to {widget}")


async def go_to(pilot, title: str):
    """Press Ctrl+N until the step called `title` shows; return it."""
    for _ in range(10):
        screen = pilot.app.screen
        step = screen.current_step()
        if step.TITLE == title:
            return step
        await pilot.press("ctrl+n")
        await pilot.pause()
    raise AssertionError(f"no step {title}")


def app_for_tests(**kw):
    kw.setdefault("theme_dirs", theme_dirs()[:1])  # bundled themes only: never the user's config
    return make_app(blink=False, **kw)


@pytest.fixture
def cwd_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTWIZARD_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path


def test_tui_import_loads_no_heavy_library():
    code = ("import sys, ftwizard.tui.app, ftwizard.tui.screens.train, ftwizard.training.launch; "
            "heavy = {'torch','transformers','peft','trl','datasets','bitsandbytes','accelerate'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- Decide ---------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
async def test_decide_to_a_fine_tune_verdict(cwd_tmp, size):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert isinstance(app.focused, OptionList)
        await pilot.press("down", "down", "enter")          # prompt: falls short with examples
        await pilot.press("down", "enter")                  # gap: format drifts
        await pilot.press("down", "enter")                  # task: extraction
        assert isinstance(app.focused, Input)
        await pilot.press(*"1500", "enter")                 # examples
        await pilot.press("down", "enter")                  # base score: below 70 %
        await pilot.pause()
        verdict = text_of(app.screen.query_one("#decide-verdict", Static))
        assert verdict.startswith("FINE-TUNE") and "DON'T" not in verdict and "FINE-TUNE: Fine-tuning" not in verdict
        assert "1,500 examples" in verdict and "extraction" in verdict
        assert app.state.config.data.task_type == "extraction"
        await pilot.press("escape")                         # undo the last answer
        await pilot.pause()
        assert "base_score" not in app.state.answers


async def test_decide_can_say_dont(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down", "down", "enter", "enter")   # falls short; lacks facts
        await pilot.pause()
        verdict = text_of(app.screen.query_one("#decide-verdict", Static))
        assert "DON'T FINE-TUNE" in verdict and "RAG" in verdict
        assert "Try instead" in verdict


# ---- Hyperparameters, save, --config ----------------------------------------------

async def test_hyperparameters_validate_warn_and_save(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Hyperparameters")
        plan = text_of(step.query_one("#plan"))
        assert "optimizer steps" in plan
        lr = step.query_one("#field-training-learning_rate").query_one(Input)
        await tab_to(pilot, lr)
        before = app.state.config.training.learning_rate
        await pilot.press("end", "ctrl+u", *"abc")
        await pilot.pause()
        note = step.query_one("#note-training-learning_rate")
        assert "valid number" in text_of(note) and app.state.config.training.learning_rate == before
        await pilot.press("end", "ctrl+u", *"5e-3")
        await pilot.pause()
        assert app.state.config.training.learning_rate == 5e-3
        assert "2e-4" in text_of(note)                      # guardrail from the guidance
        await pilot.press("ctrl+l")                         # pilot run: caps max_steps
        await pilot.pause()
        assert app.state.pilot and app.state.config.training.max_steps is not None
        assert "[pilot]" in text_of(step.query_one("#plan"))
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SaveConfigScreen)
        await pilot.press("end", "ctrl+u", *"out.yaml", "enter")
        await pilot.pause()
    saved = load_config(cwd_tmp / "out.yaml")
    assert saved.training.learning_rate == 5e-3
    assert saved.training.max_steps == app.state.config.training.max_steps
    assert "LoRA 1e-4 to 2e-4" in (cwd_tmp / "out.yaml").read_text()  # commented YAML (the field description)


async def test_save_never_overwrites_without_a_second_enter(cwd_tmp):
    (cwd_tmp / "mine.yaml").write_text("precious\n")
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("end", "ctrl+u", *"mine.yaml", "enter")
        await pilot.pause()
        assert isinstance(app.screen, SaveConfigScreen)
        assert (cwd_tmp / "mine.yaml").read_text() == "precious\n"
        await pilot.press("escape")
        await pilot.pause()
    assert (cwd_tmp / "mine.yaml").read_text() == "precious\n"


async def test_config_file_prefills_the_wizard(cwd_tmp):
    from ftwizard.config import default_config

    cfg = default_config(cwd_tmp / "train.jsonl")
    cfg.training.learning_rate = 1e-4
    cfg.lora.r = 8
    cfg.save(cwd_tmp / "given.yaml")
    before = (cwd_tmp / "given.yaml").read_text()
    app = app_for_tests(config=str(cwd_tmp / "given.yaml"))
    async with app.run_test(size=(120, 40)) as pilot:
        await go_to(pilot, "Hyperparameters")
        row = app.screen.query_one("#field-lora-r")
        assert row.query_one(Input).value == "8"
        assert app.screen.query_one("#field-training-learning_rate").query_one(Input).value == "0.0001"
        assert "training file not found" in text_of(app.screen.query_one("#plan"))
        assert app.state.default_save_path().name == "given.wizard.yaml"
    assert (cwd_tmp / "given.yaml").read_text() == before


def test_bad_config_is_a_user_error(cwd_tmp):
    from ftwizard.errors import UserError

    (cwd_tmp / "bad.yaml").write_text("training:\n  learnig_rate: 1\n")
    with pytest.raises(UserError, match="learnig_rate"):
        make_app(config=str(cwd_tmp / "bad.yaml"))


# ---- themes -------------------------------------------------------------------------

async def test_bad_theme_file_falls_back_with_a_notice(cwd_tmp):
    user = cwd_tmp / "themes"
    user.mkdir()
    (user / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (user / "mine.toml").write_text('name = "mine"\nprimary = "#ff8800"\n')
    app = app_for_tests(runs_dir=cwd_tmp / "runs", theme_dirs=[theme_dirs()[0], user], theme="broken")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == DEFAULT_THEME
        messages = [n.message for n in app._notifications]
        assert any("broken.toml" in m and "not a colour" in m for m in messages)
        assert "mine" in app.available_themes


# ---- monitor / re-attach -----------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
async def test_monitor_shows_a_finished_run(runs_dir, size):
    run = RunDir(runs_dir / "done")
    write_history(run, 120, overfit=True)
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=size) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.watch.events_read >= 120 + 12 and mon.redraws >= 1)
        await pilot.pause(0.6)
        head = text_of(mon.query_one("#mon-head", Static))
        assert "done" in head and "completed" in head and "step 120/120" in head
        assert "overfitting" in text_of(mon.query_one("#mon-warnings", Static))
        metrics = text_of(mon.query_one("#mon-metrics", Static))
        assert "1,500" in metrics and "1.25 GB" in metrics
        plot = mon.query_one(LossPlot)
        assert len(plot._train[0]) <= plot.max_points + 1 and plot._eval[0]
        assert "step 120" in text_of(mon.query_one("#mon-log", Static))
        keys = " ".join(d for _k, d, _e in app.screen.query_one(KeysFooter).keys())
        assert "Stop" not in keys and "Resume" not in keys    # completed: no dead s / r keys offered
        await pilot.press("r", "s")
        await pilot.pause(0.3)
        assert not run.stop_file.exists() and not any("Resum" in n.message for n in app._notifications)
        await pilot.press("q")
    assert app.return_code == 0


def _start_fake(path: Path, steps: int = 400, interval: float = 0.05) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(FAKERUN), str(path), str(steps), str(interval)],
                            start_new_session=True)


async def test_monitor_follows_a_live_run_and_stops_it(runs_dir):
    run = RunDir(runs_dir / "live")
    proc = _start_fake(run.path)
    try:
        deadline = time.time() + 10
        while run.read_status().get("state") != "running" and time.time() < deadline:
            time.sleep(0.05)
        app = app_for_tests(monitor=run.path)
        async with app.run_test(size=(80, 24)) as pilot:
            mon = app.screen.query_one(RunMonitor)
            await wait_for(pilot, lambda: mon.watch.step is not None and mon.watch.step >= 3)
            first = mon.watch.step
            await wait_for(pilot, lambda: mon.watch.step > first + 3)   # it follows
            redraws = mon.redraws
            await pilot.pause(1.05)
            assert mon.redraws - redraws <= 3                          # at most 2 redraws a second
            await pilot.press("s")
            await wait_for(pilot, lambda: mon.watch.state == "stopped")
            assert run.stop_file.exists()
            await pilot.pause(0.6)
            assert "stopped" in text_of(mon.query_one("#mon-head", Static))
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_quitting_during_a_run_says_it_continues(runs_dir):
    run = RunDir(runs_dir / "bg")
    proc = _start_fake(run.path, steps=2000, interval=0.05)
    try:
        deadline = time.time() + 10
        while run.read_status().get("state") != "running" and time.time() < deadline:
            time.sleep(0.05)
        app = app_for_tests(monitor=run.path)
        async with app.run_test(size=(80, 24)) as pilot:
            mon = app.screen.query_one(RunMonitor)
            await wait_for(pilot, lambda: mon.watch.active)
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, QuitScreen)
            assert "keeps training in the background" in " ".join(text_of(s) for s in app.screen.query(Static))
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.screen, QuitScreen)
            await pilot.press("q", "y")
            await pilot.pause()
        assert proc.poll() is None                       # the run goes on
    finally:
        proc.kill()
        proc.wait()


async def test_monitor_reports_a_dead_trainer(runs_dir):
    run = RunDir(runs_dir / "dead")
    write_history(run, 20, state="running", pid=2**22 + 12345)  # a pid that is not running
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.watch.state == "died" and mon.redraws >= 1)
        await pilot.pause(0.6)
        assert "died" in text_of(mon.query_one("#mon-head", Static))
        assert "is gone" in text_of(mon.query_one("#mon-warnings", Static))


async def test_run_picker_opens_a_run(runs_dir):
    write_history(RunDir(runs_dir / "first"), 10)
    write_history(RunDir(runs_dir / "second"), 30)
    app = app_for_tests(runs_dir=runs_dir, picker=True)
    async with app.run_test(size=(80, 24)) as pilot:
        from textual.widgets import DataTable

        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("enter")
        await pilot.pause()
        mon = app.screen.query_one(RunMonitor)
        assert mon.run.path.parent == runs_dir
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.query_one(DataTable) is table


async def test_a_failed_worker_shows_one_error_dialog(cwd_tmp):
    from ftwizard.tui.screens.modals import ErrorScreen

    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Train")

        def broken():
            raise RuntimeError("disk on fire")

        step.run_worker(broken, thread=True, exit_on_error=False)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "disk on fire" in " ".join(text_of(s) for s in app.screen.query(Static))
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ErrorScreen)
