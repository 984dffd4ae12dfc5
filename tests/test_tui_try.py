"""The Try step through Textual's Pilot, with a real model server process behind it.

One test (one model load): the tuned answer streams in many pieces, the status shows the
system prompt and tokens/s, Ctrl+O shows the base model's answer beside it, Esc stops a
long answer at once (and the server goes idle), Ctrl+L clears, and leaving the app stops
the server process. The run's adapter is a real (untrained, random) peft LoRA.
"""

from __future__ import annotations

import time

import pytest

from serve_support import make_adapter_run

pytestmark = pytest.mark.slow


async def wait_for(pilot, cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.1)


async def test_try_step_streams_compares_and_stops(tmp_path, embedded_model_dir):
    from textual.widgets import Input, Select, Static

    from ftwizard.tui.app import available_steps, make_app

    runs_dir, run = make_adapter_run(tmp_path, embedded_model_dir)
    app = make_app(config=run / "config.yaml", runs_dir=runs_dir, blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        names = [c.__name__ for c in available_steps()]
        assert names.index("TryStep") == names.index("EvaluateStep") + 1 == names.index("ExportStep") - 1
        await app.screen.go(names.index("TryStep"))
        await pilot.pause()
        step = app.screen.current_step()
        assert step.query_one("#try-run", Select).value == str(run)
        assert step.query_one("#try-temp", Input).value == "0"  # greedy by default

        pieces: list[int] = []
        original = step._piece

        def spy(turn, side, piece, stream):
            original(turn, side, piece, stream)
            pieces.append(len(turn.answer if side == "tuned" else turn.base or ""))

        step._piece = spy
        step.query_one("#try-input", Input).value = "What colour is the sky?"
        await pilot.press("enter")
        await wait_for(pilot, lambda: step.turns and step.turns[-1].state == "done", 300, "the first answer")
        turn = step.turns[-1]
        assert turn.answer.strip()
        assert len(pieces) >= 3 and pieces == sorted(pieces)  # it grew piece by piece on screen
        status = str(step.query_one("#try-status", Static).render())
        assert "'Answer with one word.'" in status and "tokens/s" in status

        # Ctrl+O: the base model's answer to the same message, in a pane beside the tuned one
        pieces.clear()
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: turn.base_state == "done", 300, "the base answer")
        assert turn.base and turn.base != turn.answer and len(pieces) >= 3
        tuned_pane, base_pane = step.query_one("#try-tuned-pane"), step.query_one("#try-base-pane")
        assert base_pane.display and base_pane.region.x > tuned_pane.region.x  # beside, not below
        assert base_pane.region.y == tuned_pane.region.y
        assert turn.base in str(step.query_one("#try-base", Static).render())

        # Esc stops a long answer at once; no piece is added afterwards; the server goes idle
        step.query_one("#try-input", Input).value = "Write a very long story about a dragon and a knight."
        await pilot.press("enter")
        long_turn = step.turns[-1]
        await wait_for(pilot, lambda: len(long_turn.answer) > 10, 120, "the long answer to start")
        await pilot.press("escape")
        await pilot.pause()
        assert long_turn.state == "stopped"
        assert "[stopped]" in str(step.query_one("#try-tuned", Static).render())
        frozen = long_turn.answer
        t0 = time.monotonic()
        await wait_for(pilot, lambda: not step.generating, 10, "the reader to hang up")
        await wait_for(pilot, lambda: not step.client.health()["busy"], 10, "the server to go idle")
        assert time.monotonic() - t0 < 10
        assert long_turn.answer == frozen
        # a stopped turn is not history for the next message
        assert [m["role"] for m in step.history(len(step.turns) - 1)] == ["user", "assistant", "user"]

        await pilot.press("ctrl+l")
        await pilot.pause()
        assert step.turns == [] and not base_pane.display
        server = step.server
        assert server is not None and server.alive()
    server.proc.wait(timeout=30)  # leaving the app stops the model process
