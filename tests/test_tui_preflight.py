"""Issue 16 item 1: the Train step shows the pre-flight findings before `t` starts anything.

Errors block until a deliberate confirm key (y in a dialog, never Enter); warnings are listed
with their fixes and one key (f) applies the highlighted one, as `ftwizard check --fix` does.
The check runs in a subprocess (it loads the tokenizer), so these tests take a few seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import OptionList, Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, text_of, wait_for  # noqa: E402,F401

from ftwizard.rundir import RunDir  # noqa: E402
from ftwizard.tui.screens.modals import ConfirmErrorsScreen  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _bad_app(tmp: Path):
    app = app_for_tests(runs_dir=tmp / "runs")
    cfg = app.state.config
    cfg.data.train = FIXTURES / "invalid_json.jsonl"    # row 3 is not JSON: an error
    cfg.data.eval = None
    cfg.training.learning_rate = 0.5                    # a warning with a one-key fix
    cfg.training.max_steps = 2
    return app


async def test_train_step_blocks_on_errors_and_applies_a_fix(cwd_tmp):
    app = _bad_app(cwd_tmp)
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Train")
        await wait_for(pilot, lambda: step.report is not None and not step.checking, timeout=180)
        head = text_of(step.query_one("#preflight-head", Static))
        assert "1 error" in head and "confirm" in head
        box = step.query_one("#preflight-findings", OptionList)
        labels = [str(box.get_option_at_index(i).prompt) for i in range(box.option_count)]
        assert any("not valid JSON" in x for x in labels) and any("learning rate 0.5" in x for x in labels)
        assert box.highlighted == 0                                   # the first finding is highlighted

        await pilot.press("t")                                        # errors: a dialog, nothing started
        await pilot.pause()
        assert isinstance(app.screen, ConfirmErrorsScreen)
        await pilot.press("enter")                                    # Enter is not a confirmation
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmErrorsScreen)
        assert not (cwd_tmp / "runs").exists() or not any((cwd_tmp / "runs").iterdir())

        lr_row = next(i for i, x in enumerate(labels) if "learning rate 0.5" in x)
        box.focus()
        box.highlighted = lr_row
        await pilot.press("f")                                        # one key applies that fix
        await pilot.pause()
        assert app.state.config.training.learning_rate == 2e-4
        assert any("learning_rate" in n.message for n in app._notifications)
        await wait_for(pilot, lambda: not step.checking and step.report is not None, timeout=180)
        assert not step.report.by_rule("lr.range")                   # checked again after the fix



@pytest.mark.slow
async def test_confirmed_errors_start_a_run_that_records_the_confirmation(cwd_tmp):
    app = _bad_app(cwd_tmp)
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Train")
        await wait_for(pilot, lambda: step.report is not None and not step.checking, timeout=180)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmErrorsScreen)
        await pilot.press("y")                                        # the deliberate key: start anyway
        await wait_for(pilot, lambda: step.monitor is not None, timeout=120)
        run = step.monitor.run
        saved = json.loads((run.path / "preflight.json").read_text())
        assert saved["forced"] is True and saved["counts"]["error"] == 1
        assert str(run.path.resolve()) in " ".join(n.message for n in app._notifications)
        proc = step.monitor.proc
    _stop(run, proc)


def _stop(run: RunDir, proc) -> None:
    """The forced run fails on row 3 by itself; make sure it is gone before the test ends."""
    deadline = time.time() + 120
    while proc is not None and proc.poll() is None and time.time() < deadline:
        if run.status().get("state") in ("starting", "running"):
            run.stop_file.write_text("stop\n")
        time.sleep(0.5)
    if proc is not None and proc.poll() is None:
        proc.kill()
