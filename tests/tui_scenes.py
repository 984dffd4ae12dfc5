"""Deterministic scenes of each screen, shared by the snapshot tests and by
docs/screens/capture.py (which writes the SVG screenshots the README shows).

A scene runs in a prepared folder (relative data paths, a synthetic finished run), so
the pictures do not depend on where the checkout lives. Machine facts that would make
a picture differ between machines (detected GPUs, RAM size) are pinned by `pin_machine`.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))

from tui_fakerun import write_history, write_preference_history  # noqa: E402

from ftwizard.rundir import RunDir  # noqa: E402

BAD_ROWS = [
    '{"messages": [{"role": "user", "content": "My invoice for March is wrong"}, '
    '{"role": "assistant", "content": "{\\"urgency\\": \\"medium\\", \\"category\\": \\"billing\\"}"}]}',
    '{"messages": [{"role": "user", "content": "App crashes on login"}]}',
    'this line is not json',
    '{"messages": [{"role": "user", "content": "My invoice for March is wrong"}, '
    '{"role": "assistant", "content": "{\\"urgency\\": \\"medium\\", \\"category\\": \\"billing\\"}"}]}',
    '{"instruction": "Classify", "input": "Package arrived broken", "output": "shipping"}',
]


def prepare(folder: Path) -> Path:
    """A scene folder: sample data copied in, a bad data file, and two finished runs."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "sample_data").exists():
        shutil.copytree(REPO / "sample_data", folder / "sample_data",
                        ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "bad.jsonl").write_text("\n".join(BAD_ROWS) + "\n")
    runs = folder / "runs"
    if not (runs / "lora-demo").exists():
        write_history(RunDir(runs / "lora-demo"), 300, eval_every=25, overfit=True)
        write_history(RunDir(runs / "qlora-pilot"), 40, eval_every=10)
    if not (folder / "failed-runs" / "diverged").exists():
        _diverged(RunDir(folder / "failed-runs" / "diverged"))
    if not (folder / "pref-runs" / "dpo-demo").exists():  # not in runs/: the picker scene lists two runs
        write_preference_history(RunDir(folder / "pref-runs" / "dpo-demo"), 120, eval_every=20)
    return folder


def _diverged(run: RunDir) -> None:
    """A run whose loss climbed (learning rate 0.5) and that stopped on divergence: the failed state."""
    from ftwizard.rundir import EventWriter

    run.path.mkdir(parents=True, exist_ok=True)
    w = EventWriter(run.events)
    w.write("system", event="train_begin", step=0, max_steps=200)
    losses = [1.9, 1.7, 1.8, 2.4, 3.1, 4.2, 5.0, 6.1, 7.0, 7.6]
    for s, loss in enumerate(losses, 1):
        w.write("train", step=s, epoch=s / 50, loss=loss, learning_rate=0.5, grad_norm=40.0 * s,
                tokens_per_second=1500.0, elapsed_s=3.0 * s, memory_gb=1.2)
    w.write("system", event="divergence", step=10, loss=7.6, start_loss=1.9, reason="the loss rose 4x above where "
            "it started", fix="lower training.learning_rate (0.5 -> 0.0002) and start again")
    run.write_status(state="failed", step=10, max_steps=200, pid=None, started_at=time.time() - 3600,
                     message="stopped on divergence (training.stop_on_divergence): loss 1.9 -> 7.6")
    run.log.write_text("step 8\nstep 9\nstep 10\ndivergence: stopping with a checkpoint at step 10\n")


def pin_run_ages(folder: Path) -> None:
    """Started 3 h ago (give or take 29 s of test time), so the picker's ages never change."""
    for i, name in enumerate(("lora-demo", "qlora-pilot")):
        RunDir(folder / "runs" / name).write_status(started_at=time.time() - 3 * 3600 - 30 + i * 0.01)


def pin_machine(monkeypatch) -> None:
    """The same GPU detection, RAM size and measured speed on every machine, for pictures only."""
    from ftwizard.hardware import gpus, walltime
    from ftwizard.tui.widgets.monitor import RunMonitor

    cpu = gpus.CpuInfo(cores=16, logical_cpus=32, ram_total=128 * 2**30, ram_available=100 * 2**30)
    monkeypatch.setattr(gpus, "detect", lambda: gpus.Detection([], cpu, message="no NVIDIA driver found"))
    monkeypatch.setattr(RunMonitor, "ram_total_gb", staticmethod(lambda: 128.0))
    cal = walltime.Calibration(device="cpu: pinned x16", method="lora", model="embedded", rate_flops_s=2.0e11,
                               startup_s=20.0, s_per_microbatch=1.5, flops_per_microbatch=3.0e11,
                               measured_at=time.time(), load_avg=1.0, eval_rate_flops_s=4.0e11)
    monkeypatch.setattr(walltime, "load_calibration", lambda cfg: cal)


def wizard_app(folder: Path, **kw):
    from ftwizard.tui.app import make_app
    from ftwizard.tui.themes import theme_dirs

    app = make_app(runs_dir="runs", blink=False, theme_dirs=theme_dirs()[:1], **kw)
    app.state.config.data.train = Path("sample_data/train.jsonl")
    app.state.config.data.eval = Path("sample_data/eval.jsonl")
    return app


async def settle(pilot, cond: Callable[[], bool] = lambda: True, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        if cond():
            break
    await pilot.pause(0.7)  # one more redraw tick


async def _steps(pilot, title: str) -> None:
    for _ in range(10):
        if pilot.app.screen.current_step().TITLE == title:
            break
        await pilot.press("ctrl+n")
        await pilot.pause()


@dataclass
class Scene:
    name: str
    make: Callable[[Path], object]
    run_before: Callable[[object], Awaitable[None]]


async def _decide_start(pilot):
    await settle(pilot)


async def _decide_verdict(pilot):
    await pilot.press("down", "down", "enter", "down", "enter", "down", "enter", *"1500", "enter", "down", "enter")
    await settle(pilot)


async def _decide_dont(pilot):
    await pilot.press("down", "down", "enter", "enter")
    await settle(pilot)


async def _model(pilot):
    await _steps(pilot, "Model")
    step = pilot.app.screen.current_step()
    await settle(pilot, lambda: step.detection is not None)


def _bad_data_app(folder: Path):
    app = wizard_app(folder)
    app.state.config.data.train = Path("bad.jsonl")
    return app


async def _data(pilot):
    await _steps(pilot, "Data")
    step = pilot.app.screen.current_step()
    await settle(pilot, lambda: step.report is not None and step.report["file"].endswith("bad.jsonl"))
    await pilot.press("tab", "down", "enter")  # to the lint table; jump to the second finding's row
    await settle(pilot)


async def _hyper(pilot):
    await _steps(pilot, "Hyperparameters")
    step = pilot.app.screen.current_step()
    await settle(pilot, lambda: step.rows is not None)


async def _train(pilot):
    await _steps(pilot, "Train")
    step = pilot.app.screen.current_step()
    await settle(pilot, lambda: step.report is not None and not step.checking and step.rows is not None
                 and step.walltime is not None)


def _risky_app(folder: Path):
    """Settings the pre-flight warns about (a learning rate far too high, many epochs): the findings list."""
    app = wizard_app(folder)
    t = app.state.config.training
    t.learning_rate, t.epochs, t.max_steps = 0.5, 50.0, None
    return app


async def _quit_unsaved(pilot):
    await pilot.press("down", "enter")          # one answer: not saved anywhere yet
    await settle(pilot)
    await pilot.press("ctrl+q")
    await settle(pilot)


async def _monitor(pilot):
    from ftwizard.tui.widgets.monitor import RunMonitor

    mon = pilot.app.screen.query_one(RunMonitor)
    await settle(pilot, lambda: mon.watch.caught_up() and mon.redraws >= 1)


async def _picker(pilot):
    from textual.widgets import DataTable

    screen = pilot.app.screen
    table = screen.query_one(DataTable)
    await settle(pilot, lambda: screen.loaded and table.row_count == 2)


def _monitor_app(folder: Path):
    from ftwizard.tui.app import make_app
    from ftwizard.tui.themes import theme_dirs

    return make_app(monitor="runs/lora-demo", blink=False, theme_dirs=theme_dirs()[:1])


def _failed_monitor_app(folder: Path):
    from ftwizard.tui.app import make_app
    from ftwizard.tui.themes import theme_dirs

    return make_app(monitor="failed-runs/diverged", blink=False, theme_dirs=theme_dirs()[:1])


def _dpo_monitor_app(folder: Path):
    from ftwizard.tui.app import make_app
    from ftwizard.tui.themes import theme_dirs

    return make_app(monitor="pref-runs/dpo-demo", blink=False, theme_dirs=theme_dirs()[:1])


async def _dpo_rewards(pilot):
    """A DPO run: the reward numbers beside the loss, and `p` switched to the rewards plot."""
    await _monitor(pilot)
    await pilot.press("p")
    await settle(pilot)


def _picker_app(folder: Path):
    from ftwizard.tui.app import make_app

    pin_run_ages(folder)
    from ftwizard.tui.themes import theme_dirs

    return make_app(runs_dir="runs", picker=True, blink=False, theme_dirs=theme_dirs()[:1])


SCENES = [
    Scene("decide", wizard_app, _decide_start),
    Scene("decide-verdict", wizard_app, _decide_verdict),
    Scene("decide-dont", wizard_app, _decide_dont),
    Scene("model", wizard_app, _model),
    Scene("data", _bad_data_app, _data),
    Scene("hyperparameters", wizard_app, _hyper),
    Scene("train", wizard_app, _train),
    Scene("train-findings", _risky_app, _train),
    Scene("quit-unsaved", wizard_app, _quit_unsaved),
    Scene("monitor", _monitor_app, _monitor),
    Scene("monitor-failed", _failed_monitor_app, _monitor),
    Scene("runs", _picker_app, _picker),
    Scene("monitor-dpo", _dpo_monitor_app, _dpo_rewards),
]
