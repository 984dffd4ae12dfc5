"""Issue 16 item 10: the UI never stalls. Key latency during the first lint, tested.

Each key's cost on the UI thread is measured as that thread's CPU time (load-proof: other
processes on a shared machine slow the wall clock, not this number), and the event loop's
lag is sampled every 10 ms. The CPU bound is always asserted; the wall-clock bound only on
a machine that is not overloaded (load average below its CPU count), where it means what
a person feels. bench/key_latency.py prints the same numbers as a table.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, wait_for  # noqa: E402,F401

BUDGET_S = 0.100
FOCUS_MOVE_BUDGET_S = 0.200


class LoopLag:
    """Samples how late a 10 ms sleep wakes up: the longest time the event loop could not run."""

    def __init__(self):
        self.samples: list[float] = []
        self._task = None

    async def _run(self):
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.samples.append(now - last - 0.01)
            last = now

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self):
        self._task.cancel()


async def harness_cost(pilot) -> float:
    """UI-thread CPU of the Pilot's own waiting: press() and pause() each post a callback to every widget of
    the screen and wait for them all (Pilot._wait_for_screen), a cost a person's key never pays and one that
    grows with the widget count (the Tune step has ~70). Measured with no key, to subtract."""
    costs = []
    for _ in range(3):
        c = time.thread_time()
        await pilot._wait_for_screen()
        await pilot._wait_for_screen()
        costs.append(time.thread_time() - c)
    return sorted(costs)[1]


async def measure_keys(pilot, keys: list[str], less_harness: bool = False) -> list[tuple[str, float]]:
    """(key, UI-thread CPU seconds) for each key, including the repaint it causes; less_harness: less the test
    harness's own waiting (harness_cost), for a screen with many widgets."""
    out = []
    for key in keys:
        harness = await harness_cost(pilot) if less_harness else 0.0
        c = time.thread_time()
        await pilot.press(key)
        await pilot.pause()
        out.append((key, max(0.0, time.thread_time() - c - harness)))
    return out


def overloaded() -> bool:
    return os.getloadavg()[0] >= (os.cpu_count() or 1)


async def test_keys_stay_under_100ms_during_the_first_lint(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Data")
        await wait_for(pilot, lambda: step.busy, timeout=10)          # the first lint is running
        lag = LoopLag()
        lag.start()
        costs = await measure_keys(pilot, ["tab", "shift+tab", "end", "x", "y", "backspace", "backspace",
                                           "pagedown", "pagedown", "pageup", "tab", "down", "up"])
        lag.stop()
        assert step.busy or step.report is not None
        worst = max(c for _k, c in costs)
        assert worst < BUDGET_S, costs
        if not overloaded():
            assert max(lag.samples) < BUDGET_S, max(lag.samples)


async def test_typing_in_the_long_form_stays_under_100ms(cwd_tmp):
    from textual.widgets import Input

    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Hyperparameters")
        await wait_for(pilot, lambda: step.rows is not None)
        lr = step.query_one("#field-training-learning_rate").query_one(Input)
        lr.focus()
        await pilot.pause(0.3)
        costs = await measure_keys(pilot, ["end", "backspace", "5", "backspace", "4"], less_harness=True)
        assert max(c for _k, c in costs) < BUDGET_S, costs
        # Moving focus re-lays out the whole form (~70 widgets since the preference fields, issue 14): measured
        # 30-140 ms of UI-thread CPU here, nearly all in Textual's layout (our handlers ~3 ms, cProfile). A known
        # gap against the 100 ms aim, bounded here so that it cannot grow unseen.
        moves = await measure_keys(pilot, ["tab", "shift+tab"], less_harness=True)
        assert max(c for _k, c in moves) < FOCUS_MOVE_BUDGET_S, moves
