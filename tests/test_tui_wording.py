"""Issue 16 item 13: wording and visibility.

No "DON'T FINE-TUNE: Fine-tuning", no "(guidance)" tag on every line, validation messages
beside the field, focus visible without colour (NO_COLOR), on/off by glyph, and no
bitsandbytes "pip install kernels" advice in the monitor's log.
"""

from __future__ import annotations

import sys
from pathlib import Path

from textual.widgets import DataTable, Input, OptionList

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, text_of, wait_for  # noqa: E402,F401
from tui_fakerun import write_history  # noqa: E402

from ftwizard import advice  # noqa: E402
from ftwizard.rundir import RunDir  # noqa: E402
from ftwizard.tui.runwatch import RunWatch  # noqa: E402
from ftwizard.tui.screens.decide import verdict_heading  # noqa: E402
from ftwizard.tui.widgets.light import Choice  # noqa: E402
from ftwizard.tui.widgets.toggle import Toggle  # noqa: E402


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def test_verdict_heading_never_says_dont_fine_tune_fine_tuning():
    high = advice.decide({"prompt": "falls_short", "gap": "format", "task_type": "extraction", "examples": 1500,
                          "base_score": "high"})
    assert not high.fine_tune and high.approach == "fine_tune"      # the case that read "DON'T FINE-TUNE: Fine-tuning"
    assert verdict_heading(high).plain == "DON'T FINE-TUNE"
    prompt = advice.decide({"prompt": "not_tried"})
    assert verdict_heading(prompt).plain == "DON'T FINE-TUNE - instead: Prompt engineering"


async def test_no_guidance_tag_on_every_line_and_notes_beside_the_field(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down", "down", "enter", "down", "enter", "down", "enter", *"1500", "enter")
        await pilot.pause()
        assert "(guidance)" not in screen_text(app)
        step = await go_to(pilot, "Hyperparameters")
        lr = step.query_one("#field-lora-r").query_one(Input)   # description ends in "(guidance)" in config.py
        lr.focus()
        await pilot.pause()
        assert "(guidance)" not in text_of(step.query_one("#field-help"))
        await pilot.press("end", "ctrl+u", *"abc")
        await pilot.pause()
        note = step.query_one("#note-lora-r")
        row = step.query_one("#field-lora-r")
        assert "x " in text_of(note) and note.region.y == row.region.y + 1   # the line right under the bad value


async def test_focus_and_state_show_without_colour(cwd_tmp, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        options = app.screen.query_one(OptionList)
        style = options.get_component_rich_style("option-list--option-highlighted")
        assert style.bold or style.reverse
        step = await go_to(pilot, "Hyperparameters")
        pilot_toggle = step.query_one("#pilot", Toggle)
        assert pilot_toggle.render().plain.startswith("[ ]")          # off, by glyph
        pilot_toggle.focus()
        await pilot.press("space")
        await pilot.pause()
        assert pilot_toggle.render().plain.startswith("[x]") and app.state.pilot
        assert pilot_toggle.styles.text_style.reverse or pilot_toggle.styles.text_style.bold
        await pilot.press("ctrl+a")                                   # every setting, the scheduler among them
        await pilot.pause()
        choice = step.query_one("#field-training-scheduler").query_one(Choice)
        choice.focus()
        await pilot.pause()
        assert choice.styles.text_style.reverse
        inp = step.query_one("#field-training-learning_rate").query_one(Input)
        inp.focus()
        await pilot.pause()
        assert inp.styles.text_style.bold or inp.styles.text_style.underline
        await pilot.press("ctrl+p")                                   # back to Data
        await pilot.pause()
        table = app.screen.current_step().query_one(DataTable)
        table.focus()
        await pilot.pause()
        style = table.get_component_rich_style("datatable--cursor")
        assert style.bold or style.reverse


def test_kernels_advice_stays_out_of_the_log_tail(tmp_path):
    run = RunDir(tmp_path / "r")
    write_history(run, 5)
    run.log.write_text("step 1\nFailed to load CPU gemm_4bit_forward from kernels-community: no module. Please make "
                       "sure you already `pip install kernels` and the kernels >= 0.11.1\nstep 2\n")
    w = RunWatch(run)
    w.poll()
    assert w.log_tail == ["step 1", "step 2"]
