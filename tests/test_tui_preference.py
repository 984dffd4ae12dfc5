"""Issue 14 in the wizard: preference tuning (DPO, ORPO, KTO) at 80x24, keys only.

The wizard walks each objective from the Decide and Data steps to the Train step's plan (the config it would
start, checked field by field; nothing trains here), the monitor shows a preference run's own curves, and the
Evaluate step shows preference accuracy and the reward margin from eval/summary.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from textual.widgets import Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, text_of, wait_for  # noqa: E402,F401
from tui_fakerun import write_history, write_preference_history  # noqa: E402

from ftwizard.rundir import RunDir  # noqa: E402
from ftwizard.tui.widgets.loss_plot import LossPlot, RewardPlot  # noqa: E402
from ftwizard.tui.widgets.monitor import RunMonitor  # noqa: E402


def footer_keys(app) -> str:
    from ftwizard.tui.widgets.keys_footer import KeysFooter

    return " ".join(text_of(f) for f in app.screen.query(KeysFooter))


# ---- monitor ------------------------------------------------------------------------------------------------

async def test_monitor_shows_a_preference_runs_rewards_beside_the_loss(tmp_path):
    run = RunDir(tmp_path / "runs" / "dpo")
    write_preference_history(run, 60, eval_every=20, kto=True)
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.redraws >= 1 and mon.watch.caught_up())
        await pilot.pause(0.6)
        assert mon.watch.preference
        metrics = text_of(mon.query_one("#mon-metrics", Static))
        for word in ("margin", "accuracy", "chosen/rej", "kl"):
            assert word in metrics, metrics
        assert "2" in metrics.split("margin")[1].splitlines()[0]           # the last margin (2.0)
        assert "0.8 / -1.2" in metrics                                     # chosen / rejected rewards
        assert any(c in metrics for c in "▁▂▃▄▅▆▇█")                       # the trend as a sparkline
        # every row of the panel fits in it at 80x24 (nothing cut off at the bottom)
        panel = mon.query_one("#mon-metrics")
        assert len(metrics.rstrip().splitlines()) <= panel.content_size.height
        assert "p Rewards" in footer_keys(app)
        assert mon.query_one(LossPlot).display and not mon.query_one(RewardPlot).display
        await pilot.press("p")                                             # the second plot: rewards over steps
        await pilot.pause(0.8)
        plot = mon.query_one(RewardPlot)
        assert plot.display and not mon.query_one(LossPlot).display
        drawn = plot.render().plain
        assert "60" in drawn and "-1" in drawn                            # x axis to step 60; negative rewards
        assert "chosen" in str(plot.border_title) and "margin" in str(plot.border_title)
        assert plot.border_subtitle == "eval: margin 1.6, accuracy 75%"   # held-out pairs, last eval
        await pilot.press("p")
        await pilot.pause(0.6)
        assert mon.query_one(LossPlot).display


async def test_monitor_of_an_sft_run_offers_no_rewards(tmp_path):
    run = RunDir(tmp_path / "runs" / "sft")
    write_history(run, 30)
    app = app_for_tests(monitor=run.path)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        await wait_for(pilot, lambda: mon.redraws >= 1 and mon.watch.caught_up())
        await pilot.pause(0.6)
        assert not mon.watch.preference
        assert "margin" not in text_of(mon.query_one("#mon-metrics", Static))
        assert "Rewards" not in footer_keys(app)
        await pilot.press("p")
        await pilot.pause(0.3)
        assert mon.query_one(LossPlot).display
