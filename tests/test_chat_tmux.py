"""`ftwizard chat` in a real terminal (tmux): streaming answer with tokens/s, the system prompt
shown, /base beside the tuned answer, Esc stopping a long answer, /clear and /quit.

The run's adapter is a real (untrained, random) peft LoRA, so "tuned" and "base" answer
differently; the model runs in the server process that chat starts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from serve_support import make_adapter_run
from test_tmux_monitor import Tmux

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


def test_chat_in_a_terminal(tmp_path, embedded_model_dir):
    runs_dir, run = make_adapter_run(tmp_path, embedded_model_dir)
    tm = Tmux(tmp_path)
    cmd = f"{sys.executable} -m ftwizard chat demo --runs-dir {runs_dir} --max-tokens 24; echo CHAT-EXITED-$?; sleep 30"
    tm.start("chat", cmd, tmp_path, size=(110, 40))
    try:
        screen = tm.wait_screen("chat", "you>", timeout=300)
        assert "system prompt: 'Answer with one word.'" in screen
        assert "chatting with demo (final)" in screen

        tm.keys("chat", "What colour is the sky?", "Enter")
        screen = tm.wait_screen("chat", "tokens/s", timeout=120)
        assert "demo> " in screen and "first token" in screen

        tm.keys("chat", "/base", "Enter")
        screen = tm.wait_screen("chat", "┃ base", timeout=120)  # the side-by-side table's header
        assert "base> " in screen

        tm.keys("chat", "/clear", "Enter")
        tm.wait_screen("chat", "[history cleared]")

        tm.keys("chat", "Write a very long story about a dragon and a knight.", "Enter")
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until the new answer is streaming, then stop it
            lines = tm.screen("chat").splitlines()
            asked = max((i for i, ln in enumerate(lines) if "a dragon and a knight" in ln), default=None)
            answer = [ln for ln in lines[asked + 1:] if ln.startswith("demo> ")] if asked is not None else []
            if answer and len(answer[0]) > 12:
                break
            time.sleep(0.2)
        tm.keys("chat", "Escape")
        screen = tm.wait_screen("chat", "[stopped after", timeout=10)
        assert screen.rstrip().endswith("you>")  # ready for the next message at once

        tm.keys("chat", "/quit", "Enter")
        tm.wait_screen("chat", "CHAT-EXITED-0", timeout=30)
    finally:
        tm.tmux("kill-server", check=False)
    time.sleep(1.0)  # the private server process went with the chat
    out = subprocess.run(["pgrep", "-f", f"ftwizard.serve.worker.*{run}"], capture_output=True, text=True)
    assert out.stdout.strip() == ""
