"""Issue 16 items 3, 4, 5 and 11 on the screen: divergence in the monitor, one default config,
the expected wall time before `t`, and quitting (save unsaved answers; an active run's path)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from textual.widgets import Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import _start_fake, app_for_tests, cwd_tmp, go_to, text_of, wait_for  # noqa: E402,F401
from tui_scenes import _diverged, pin_machine  # noqa: E402

from ftwizard.rundir import RunDir  # noqa: E402
from ftwizard.tui.screens.modals import QuitScreen, SaveConfigScreen  # noqa: E402
from ftwizard.tui.widgets.monitor import RunMonitor  # noqa: E402


async def test_monitor_warns_of_divergence_with_what_to_change(tmp_path):
    run = RunDir(tmp_path / "runs" / "diverged")
    _diverged(run)
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.redraws >= 1 and mon.watch.caught_up())
        await pilot.pause(0.6)
        warning = text_of(mon.query_one("#mon-warnings", Static))
        assert "diverging at step 10" in warning and "1.9 -> 7.6" in warning and "learning_rate" in warning


async def test_wizard_starts_from_the_same_default_config_as_init(cwd_tmp):
    from ftwizard.config import starting_config

    app = app_for_tests()
    expected = starting_config().to_dict()
    got = app.state.config.to_dict()
    expected.pop("runs_dir"), got.pop("runs_dir")
    assert got == expected
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Hyperparameters")
        await wait_for(pilot, lambda: step.rows is not None)
        assert f"= {expected['training']['max_steps'] or 50} optimizer steps" in text_of(step.query_one("#plan"))


async def test_plan_shows_wall_time_here_and_the_pilots_before_t(cwd_tmp, monkeypatch):
    pin_machine(monkeypatch)                                   # a measured speed for this machine
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Hyperparameters")
        await wait_for(pilot, lambda: step.rows is not None)
        plan = text_of(step.query_one("#plan"))
        assert "on this CPU" in plan and "pilot" in plan and "s/step" in plan
        await pilot.press("ctrl+n")
        train = app.screen.current_step()
        await wait_for(pilot, lambda: train.walltime is not None and train.walltime.get("full") is not None)
        await pilot.pause(0.3)
        summary = text_of(train.query_one("#train-summary", Static))
        assert "about" in summary and "this CPU" in summary and "a pilot run" in summary


async def test_quit_offers_to_save_unsaved_answers(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+q")                            # nothing changed: quits at once
        await pilot.pause()
    assert app.return_code == 0
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down", "down", "enter")             # an answer
        await pilot.pause()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitScreen)
        assert "not saved" in " ".join(text_of(s) for s in app.screen.query(Static))
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SaveConfigScreen)
        await pilot.press("end", "ctrl+u", *"answers.yaml", "enter")
        await pilot.pause(0.5)
    assert (cwd_tmp / "answers.yaml").is_file() and app.return_code == 0


async def test_quit_with_an_active_run_shows_at_once_with_the_absolute_path(runs_dir):
    run = RunDir(runs_dir / "bg")
    proc = _start_fake(run.path, steps=4000, interval=0.02)
    try:
        deadline = time.time() + 10
        while run.read_status().get("state") != "running" and time.time() < deadline:
            time.sleep(0.05)
        app = app_for_tests(monitor=run.path)
        async with app.run_test(size=(80, 24)) as pilot:
            mon = app.screen.query_one(RunMonitor)
            await wait_for(pilot, lambda: mon.watch.active)
            c = time.thread_time()
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)                  # there when the key has been handled
            assert time.thread_time() - c < 0.3, time.thread_time() - c  # nothing slow ran before it
            text = " ".join(text_of(s) for s in app.screen.query(Static))
            assert str(run.path.resolve()) in text.replace("\n", "") and "ftwizard monitor bg" in text
            await pilot.press("y")
            await pilot.pause()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


async def test_leaving_the_wizard_ends_the_speed_probe_and_its_trainer(cwd_tmp, monkeypatch):
    """The probe (`python -m ftwizard.hardware.walltime`) starts a trainer of its own; quitting the wizard
    while it measures must end both, not leave a training process behind (seen: orphaned probes)."""
    import psutil

    # an empty speed cache of its own: with the session's (calibrated by an earlier test) no probe starts
    monkeypatch.setenv("FTWIZARD_WALLTIME_CACHE", str(cwd_tmp / "walltime.json"))

    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Train")
        await wait_for(pilot, lambda: getattr(step, "_measure_proc", None) is not None, timeout=120)
        probe = psutil.Process(step._measure_proc.pid)
        await wait_for(pilot, lambda: any("ftwizard.training.worker" in " ".join(c.cmdline())
                                          for c in probe.children(recursive=True)), timeout=120)
        family = [probe, *probe.children(recursive=True)]
    _gone, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, [p.cmdline() for p in alive]
