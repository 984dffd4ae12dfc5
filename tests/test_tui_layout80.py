"""80x24 is a design target: step names, footer keys, the monitor's header, the loss plot.

Issue 16, items 7, 12 and 14: each test reads what the screen shows at 80x24.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from textual.widgets import Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, text_of, wait_for  # noqa: E402,F401
from tui_fakerun import write_history  # noqa: E402

from ftwizard.rundir import RunDir  # noqa: E402
from ftwizard.tui.widgets.keys_footer import KeysFooter  # noqa: E402
from ftwizard.tui.widgets.loss_plot import loss_ticks, render_loss_plot  # noqa: E402
from ftwizard.tui.widgets.monitor import RunMonitor  # noqa: E402
from ftwizard.tui.widgets.steps import StepIndicator  # noqa: E402


def screen_lines(app) -> list[str]:
    """What the terminal shows, line by line (the compositor's own output)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def test_step_bar_uses_whole_short_names_at_80_columns(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        bar = screen_lines(app)[0]
        titles = app.screen.query_one(StepIndicator).short
        for i, name in enumerate(titles, 1):
            assert f"{i} {name}" in bar, (name, bar)
        assert "Tune" in bar and "Hype" not in bar.replace("Hyperparameters", "")
        assert "…" not in bar
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "Hyperparameters" in screen_lines(app)[0]       # room for the full names


async def test_step_bar_fits_eight_steps_in_80_columns():
    bar = StepIndicator(["Decide", "Model", "Data", "Hyperparameters", "Train", "Evaluate", "Try", "Export"],
                        short=["Decide", "Model", "Data", "Tune", "Train", "Eval", "Try", "Export"])
    for names, sep in bar.layouts():
        cells = [f" {i + 1} {n} " for i, n in enumerate(names)]
        if sum(map(len, cells)) + len(sep) * 7 <= 78:
            assert names == bar.short                            # short names, whole
            break
    else:
        raise AssertionError("no layout fits 78 columns")


async def test_evaluate_footer_keeps_the_wizard_keys_at_80x24(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await go_to(pilot, "Evaluate")
        await pilot.pause(0.3)
        footer = "\n".join(screen_lines(app)[-3:])
        for key, what in (("^n", "Next"), ("^p", "Back"), ("^q", "Quit"), ("^s", "Save")):
            assert f"{key} {what}" in footer, footer
        shown = app.screen.query_one(KeysFooter).keys()
        assert all(f"{k} {d}" in footer.replace("\n", "  ") for k, d, _e in shown)


async def test_long_run_header_never_wraps_over_its_bar(tmp_path):
    run = RunDir(tmp_path / "runs" / ("a-very-long-run-name-that-goes-on-" * 2 + "end"))
    write_history(run, 1234, state="running", pid=os.getpid())
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.redraws >= 1 and mon.watch.caught_up())
        await pilot.pause(0.6)
        head = text_of(mon.query_one("#mon-head", Static)).rstrip("\n").splitlines()
        lines = screen_lines(app)
        assert "step 1234/1234" in lines[0] and "%" in lines[1] and ("took" in lines[1] or "ETA" in lines[1])
        assert len([ln for ln in head if ln.strip()]) == 2


def test_loss_axis_is_labelled_in_loss_values_on_a_log_scale():
    train = ([1, 2, 3, 4, 5, 6], [math.log10(v) for v in (2.5, 1.9, 1.2, 0.9, 0.7, 0.55)])
    evals = ([3, 6], [math.log10(1.3), math.log10(0.8)])
    text = render_loss_plot(train, evals, 60, 14).plain
    labels = [ln.split("┤")[0].strip() for ln in text.splitlines() if "┤" in ln]
    assert labels and all(float(x) > 0 for x in labels)              # losses, not log10 values (which go < 0)
    assert set(labels) <= {"0.5", "1", "2"} and len(labels) >= 2
    assert loss_ticks(math.log10(0.001), math.log10(8), 10) == [0.001, 0.01, 0.1, 1.0] or \
        len(loss_ticks(math.log10(0.001), math.log10(8), 10)) <= 3


def test_eval_loss_is_a_line_and_one_point_gets_a_whole_step_range():
    evals = ([10, 20], [math.log10(1.0), math.log10(0.5)])
    only_eval = render_loss_plot(([], []), evals, 60, 12).plain
    marks = sum(ch in "▖▗▘▝▀▄▌▐▚▞▙▛▜▟█" for ch in only_eval.split("└")[0])
    assert marks >= 20                                             # a line between the points, not two dots
    one = render_loss_plot(([7], [math.log10(1.9)]), ([], []), 60, 10).plain
    x_axis = one.splitlines()[-1]
    assert "7" in x_axis.split() and "." not in x_axis           # whole steps around the point, no 6.67
