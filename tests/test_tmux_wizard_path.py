"""The whole wizard path in a real terminal at 80x24, keys only (issue 16, slow).

Decide -> Model -> Data -> Tune (pilot) -> Train: the pre-flight findings, t, a stop, a
resume; the terminal goes away; `ftwizard monitor NAME` from another folder re-attaches
(the per-user run index) and sees the run complete; then the wizard again: Evaluate (e)
and an adapter-only export (Ctrl+E). Every check reads the screen text. On the embedded
model with a tiny data set, so it fits in minutes on a 2-core box.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from ftwizard.rundir import RunDir

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("ftwizard") is None,
                                reason="needs tmux and the installed ftwizard command")

from test_tmux_monitor import Tmux, _wait_state  # noqa: E402

SIZE = (80, 24)


def _ticket(i: int) -> str:
    cat = ("billing", "technical", "account", "shipping")[i % 4]
    return json.dumps({"messages": [
        {"role": "user", "content": f"Ticket {i}: a question about {cat}, number {i * 7}"},
        {"role": "assistant", "content": json.dumps({"urgency": "low", "category": cat})}]})


def _project(folder: Path) -> Path:
    from ftwizard.config import default_config

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("\n".join(_ticket(i) for i in range(10)) + "\n")
    (folder / "eval.jsonl").write_text("\n".join(_ticket(100 + i) for i in range(4)) + "\n")
    cfg = default_config(folder / "train.jsonl", folder / "eval.jsonl")
    cfg.data.max_length = 64
    t = cfg.training
    t.batch_size, t.gradient_accumulation, t.eval_every, t.save_every, t.epochs = 1, 1, 0, 4, 1.0
    t.learning_rate = 2e-4
    cfg.save(folder / "tiny.yaml")
    return folder / "tiny.yaml"


def _until(tmux: Tmux, name: str, ok, timeout: float, what: str) -> str:
    deadline = time.time() + timeout
    screen = ""
    while time.time() < deadline:
        screen = tmux.screen(name)
        if ok(screen):
            return screen
        time.sleep(0.5)
    raise AssertionError(f"{what} not on screen after {timeout}s:\n{screen}")


def _step_to(tmux: Tmux, name: str, marker: str, limit: int = 9) -> str:
    for _ in range(limit):
        screen = tmux.screen(name)
        if marker in screen:
            return screen
        tmux.keys(name, "C-n")
        time.sleep(1.5)
    return tmux.wait_screen(name, marker, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_wizard_path_from_decide_to_export_at_80x24(tmp_path, embedded_model_dir):
    a, b = tmp_path / "project", tmp_path / "elsewhere"
    b.mkdir()
    _project(a)
    runs = a / "runs"
    tmux = Tmux(tmp_path)
    run = None
    try:
        tmux.start("wiz", "ftwizard --config tiny.yaml --runs-dir runs", a, size=SIZE)
        tmux.wait_screen("wiz", "Have you tried a strong prompt", timeout=60)
        bar = tmux.screen("wiz").splitlines()[0]
        assert "4 Tune" in bar and "Export" in bar and "Hype" not in bar          # whole short names
        for keys in (("Down", "Down", "Enter"), ("Down", "Enter"), ("Down", "Enter")):
            tmux.keys("wiz", *keys)
            time.sleep(0.5)
        tmux.keys("wiz", *"1500", "Enter")
        time.sleep(0.5)
        tmux.keys("wiz", "Down", "Enter")
        verdict = tmux.wait_screen("wiz", "FINE-TUNE", timeout=30)
        assert "DON'T" not in verdict and "^q Quit" in verdict

        model = _step_to(tmux, "wiz", "Estimate:")
        assert "RAM" in model and "fp32" in model and "--" not in model.replace("---", "")
        _step_to(tmux, "wiz", "training file")
        data = tmux.wait_screen("wiz", "usable", timeout=180)                     # the lint finished
        assert "in use:" in data and "eval.jsonl" in data
        tmux.keys("wiz", "C-n")
        tmux.wait_screen("wiz", "Pilot run", timeout=30)
        tmux.keys("wiz", "C-l")
        tune = tmux.wait_screen("wiz", "[pilot]", timeout=30)
        assert "[x] on" in tune
        tmux.keys("wiz", "C-n")
        train = _until(tmux, "wiz", lambda s: "Pre-flight:" in s and "checking" not in s, 300, "the pre-flight")
        assert "Press t to start" in train and "plan" in train
        tmux.keys("wiz", "t")
        _until(tmux, "wiz", lambda s: runs.is_dir() and any(runs.iterdir()), 120, "a run folder")
        run = RunDir(next(runs.iterdir()))
        _until(tmux, "wiz", lambda s: (run.path / "preflight.json").is_file(), 60, "preflight.json")  # the gate ran
        _until(tmux, "wiz", lambda s: (run.status().get("step") or 0) >= 2, 400, "two steps")
        tmux.keys("wiz", "s")                                                       # stop
        _wait_state(run, ("stopped",), 300)
        stopped = tmux.wait_screen("wiz", "stopped", timeout=30)
        assert "r Resume" in stopped and "s Stop" not in stopped
        step_at_stop = run.status().get("step")
        tmux.keys("wiz", "r")                                                       # resume
        _wait_state(run, ("starting", "running"), 120)
        tmux.wait_screen("wiz", "running", timeout=300)
        tmux.kill("wiz")                                                            # the terminal goes away

        tmux.start("back", f"ftwizard monitor {run.name}", b, size=SIZE)            # another folder
        tmux.wait_screen("back", run.name, timeout=60)
        _wait_state(run, ("completed", "failed", "died"), 600)
        assert run.status()["state"] == "completed", run.log.read_text()[-2000:]
        done = tmux.wait_screen("back", "completed", timeout=30)
        steps = run.status()["max_steps"]
        assert f"step {steps}/{steps}" in done and steps > step_at_stop
        lines = done.splitlines()
        assert "%" in lines[1] and "took" in lines[1]                               # header did not wrap
        tmux.keys("back", "q")
        tmux.kill("back")

        tmux.start("wiz2", "ftwizard --config tiny.yaml --runs-dir runs", a, size=SIZE)
        tmux.wait_screen("wiz2", "Have you tried a strong prompt", timeout=60)
        _step_to(tmux, "wiz2", f"run {run.name}")                                   # the Evaluate step
        tmux.keys("wiz2", "e")
        _until(tmux, "wiz2", lambda s: "final" in s and "evaluating" not in s, 600, "the evaluation")
        _step_to(tmux, "wiz2", "formats")                                           # the Export step
        time.sleep(3.0)                  # under load the step's first focus can land after early keys
        tmux.keys("wiz2", "C-p")
        tmux.wait_screen("wiz2", "fine-tuned", timeout=60)
        time.sleep(2.0)
        tmux.keys("wiz2", "C-n")
        tmux.wait_screen("wiz2", "formats", timeout=60)
        time.sleep(3.0)
        # focus starts on the run; Tab order: adapter, merged, gguf, ollama -> clear the last three
        for key in ("Tab", "Tab", "space", "Tab", "space", "Tab", "space"):
            tmux.keys("wiz2", key)
            time.sleep(0.5)
        tmux.keys("wiz2", "C-e")
        _until(tmux, "wiz2", lambda s: "export completed" in s or "export failed" in s, 600, "the export")
        exported = tmux.screen("wiz2")
        assert "export completed" in exported and "adapter  ok" in exported, exported
        manifest = json.loads((run.path / "export" / "manifest.json").read_text())
        assert "merged" not in manifest["formats"] and "gguf" not in manifest["formats"], manifest["formats"]
        export_dir = run.path / "export"
        assert any(export_dir.rglob("adapter_model.safetensors"))
        assert not any(export_dir.rglob("*.gguf"))                                  # adapter only, as chosen
    finally:
        if run is not None and run.status().get("state") in ("starting", "running", "stopping"):
            from ftwizard.training.launch import request_stop

            request_stop(run)
        tmux.close()
