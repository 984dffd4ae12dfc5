"""The real installed program in a real terminal (tmux): send-keys, capture-pane.

The fast test re-attaches to a run written by a small stand-in trainer process (the
run-folder contract, no model). The slow one goes through the wizard with keys,
starts a real tiny run of the embedded model, kills the terminal, re-attaches with
`ftwizard monitor RUN` from a new one and watches the run complete.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ftwizard.rundir import RunDir

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("ftwizard") is None,
                                reason="needs tmux and the installed ftwizard command")

FAKERUN = Path(__file__).parent / "tui_fakerun.py"


class Tmux:
    """One private tmux server (its own socket), so tests never touch the user's sessions."""

    def __init__(self, tmp: Path):
        self.socket = str(tmp / f"tmux-{uuid.uuid4().hex[:8]}")
        self.env = dict(os.environ, TERM="xterm-256color", TEXTUAL_ANIMATIONS="none")

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=check,
                              env=self.env)

    def start(self, name: str, command: str, cwd: Path, size=(100, 30)) -> None:
        self.tmux("new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), "-c", str(cwd),
                  command)

    def keys(self, name: str, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", name, k)
            time.sleep(0.15)

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", name, check=False).stdout

    def wait_screen(self, name: str, needle: str, timeout: float = 30.0) -> str:
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            text = self.screen(name)
            if needle in text:
                return text
            time.sleep(0.3)
        raise AssertionError(f"{needle!r} not on screen after {timeout}s:\n{text}")

    def kill(self, name: str) -> None:
        self.tmux("kill-session", "-t", name, check=False)

    def close(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path)
    yield t
    t.close()


def _wait_state(run: RunDir, states, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = run.status().get("state")
        if st in states:
            return st
        time.sleep(0.2)
    raise AssertionError(f"run {run.name} still {run.status().get('state')} after {timeout}s")


def test_monitor_reattaches_in_a_new_terminal(tmux, runs_dir):
    run = RunDir(runs_dir / "tmuxrun")
    proc = subprocess.Popen([sys.executable, str(FAKERUN), str(run.path), "600", "0.05"], start_new_session=True)
    try:
        _wait_state(run, ("running",), 15)
        tmux.start("one", f"ftwizard monitor {run.path}", runs_dir)
        first = tmux.wait_screen("one", "running")
        assert "tmuxrun" in first and "loss, log scale" in first and "Stop" in first
        tmux.kill("one")                        # the terminal goes away...
        time.sleep(1.0)
        assert proc.poll() is None              # ...the run does not
        tmux.start("two", f"ftwizard monitor tmuxrun --runs-dir {runs_dir}", runs_dir, size=(80, 24))
        tmux.wait_screen("two", "running")
        step_then = run.status().get("step")
        time.sleep(1.5)
        later = tmux.screen("two")
        assert "tmuxrun" in later and "step " in later
        assert run.status().get("step") > step_then
        tmux.keys("two", "s")                   # graceful stop from the monitor
        _wait_state(run, ("stopped",), 15)
        tmux.wait_screen("two", "stopped", timeout=10)
        tmux.keys("two", "q")
        time.sleep(1.0)
        assert "tmuxrun" not in tmux.screen("two") or tmux.tmux("has-session", "-t", "two", check=False).returncode
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wizard_starts_a_real_run_that_outlives_its_terminal(tmux, tmp_path, embedded_model_dir):
    from ftwizard.config import default_config

    rows = [
        '{"messages": [{"role": "user", "content": "Ticket %d: my invoice is wrong"}, '
        '{"role": "assistant", "content": "{\\"urgency\\": \\"low\\", \\"category\\": \\"billing\\"}"}]}' % i
        for i in range(8)
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    cfg = default_config(tmp_path / "train.jsonl")
    cfg.data.max_length = 64
    t = cfg.training
    t.max_steps, t.batch_size, t.gradient_accumulation, t.eval_every, t.save_every = 6, 1, 1, 0, 0
    cfg.save(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"

    tmux.start("wiz", f"ftwizard --config tiny.yaml --runs-dir {runs}", tmp_path)
    tmux.wait_screen("wiz", "Have you tried a strong prompt")
    for _ in range(6):                          # Decide -> ... -> Train, one step per Ctrl+N
        if "Press t to start" in tmux.screen("wiz"):
            break
        tmux.keys("wiz", "C-n")
        time.sleep(1.0)
    tmux.wait_screen("wiz", "Press t to start")
    deadline = time.time() + 300                # t starts once the pre-flight check has finished
    while time.time() < deadline and ("Pre-flight:" not in tmux.screen("wiz") or "checking" in tmux.screen("wiz")):
        time.sleep(0.5)
    tmux.keys("wiz", "t")
    deadline = time.time() + 60
    while time.time() < deadline and not (runs.is_dir() and any(runs.iterdir())):
        time.sleep(0.2)
    run = RunDir(next(runs.iterdir()))
    try:
        tmux.wait_screen("wiz", run.name, timeout=120)
        tmux.kill("wiz")                            # drop the terminal mid-run
        assert run.status().get("state") in ("starting", "running", "completed")

        tmux.start("back", f"ftwizard monitor {run.name} --runs-dir {runs}", tmp_path)
        tmux.wait_screen("back", run.name, timeout=60)
        _wait_state(run, ("completed", "failed", "died"), 1200)  # minutes on a busy 2-core box
        assert run.status()["state"] == "completed", run.log.read_text()[-2000:]
        screen = tmux.wait_screen("back", "completed", timeout=15)
        assert "step 6/6" in screen
    finally:
        if run.status().get("state") in ("starting", "running", "stopping"):  # never leave a trainer behind
            from ftwizard.training.launch import request_stop

            request_stop(run)
