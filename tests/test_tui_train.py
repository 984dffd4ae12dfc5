"""A real tiny run of the embedded model, started and stopped from the wizard (slow).

The trainer runs in its own process (the launcher); the app only reads the run folder.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, go_to, text_of, wait_for  # noqa: E402

from ftwizard.rundir import FINAL_STATES  # noqa: E402
from ftwizard.tui.widgets.monitor import RunMonitor  # noqa: E402


def tiny_config(tmp_path: Path, max_steps: int):
    from ftwizard.config import default_config

    rows = [
        '{"messages": [{"role": "user", "content": "Ticket %d: I was charged twice"}, '
        '{"role": "assistant", "content": "{\\"urgency\\": \\"high\\", \\"category\\": \\"billing\\"}"}]}' % i
        for i in range(16)
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    cfg = default_config(tmp_path / "train.jsonl")
    cfg.data.max_length = 64
    t = cfg.training
    t.max_steps, t.batch_size, t.gradient_accumulation, t.eval_every, t.save_every = max_steps, 1, 1, 0, 0
    cfg.save(tmp_path / "tiny.yaml")
    return tmp_path / "tiny.yaml"


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_train_step_starts_a_real_run_and_stops_it(tmp_path, monkeypatch, embedded_model_dir):
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path, max_steps=500)
    app = app_for_tests(config=str(config), runs_dir=tmp_path / "runs")
    async with app.run_test(size=(100, 32)) as pilot:
        step = await go_to(pilot, "Train")
        await wait_for(pilot, lambda: step.report is not None and not step.checking, timeout=180)
        assert step.report.ok, [f.message for f in step.report.errors]   # 16 clean rows: warnings at most
        await pilot.press("t")
        await wait_for(pilot, lambda: step.monitor is not None, timeout=120)
        mon = step.monitor
        await wait_for(pilot, lambda: mon.watch.latest.get("step", 0) >= 2, timeout=600)   # live train events
        assert mon.watch.latest["loss"] > 0 and mon.watch.state == "running"
        await pilot.pause(0.6)
        assert "running" in text_of(mon.query_one("#mon-head"))
        assert app.active_runs() == [(mon.run.name, str(mon.run.path.resolve()))]
        await pilot.press("s")                                                          # graceful stop
        await wait_for(pilot, lambda: mon.watch.state in FINAL_STATES, timeout=300)
        assert mon.watch.state == "stopped", mon.watch.log_tail[-10:]
        assert mon.run.last_checkpoint() is not None                                   # resumable
        assert mon.watch.step < 500
