"""Issue 16 item 9: the Model step on a machine without a GPU, its fixes list, and undoing a fix.

CPU facts (RAM, fp32, no CUDA context) with the estimate judged against RAM, as `ftwizard
check` does; no CLI flags in the step's text; Enter applies the highlighted fix and the first
usable fix starts highlighted; changing the model after a fix says what the fix changed and
`u` undoes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from textual.widgets import Input, OptionList, Select, Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, tab_to, text_of, wait_for  # noqa: E402,F401
from test_tui_steps import _choose  # noqa: E402
from tui_scenes import pin_machine  # noqa: E402


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def test_cpu_machine_shows_cpu_facts_and_judges_against_ram(cwd_tmp, monkeypatch):
    pin_machine(monkeypatch)                                    # no GPU, 16 cores, 128 GB RAM
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Model")
        await wait_for(pilot, lambda: step.detection is not None)
        await pilot.pause(0.2)
        detected = text_of(step.query_one("#model-detected", Static))
        assert "128 GB RAM" in detected and "fp32" in detected and "no CUDA context" in detected
        verdict = text_of(step.query_one("#model-verdict", Static))
        assert "fits in" in verdict and "RAM" in verdict and "fp32" in verdict
        assert step.estimate.parts.get("cuda_context", 0) == 0 and step.estimate.precision == "fp32"
        shown = screen_text(app)
        assert "--" not in shown.replace("---", "") and "ftwizard " not in shown   # no CLI flags or commands


async def test_enter_applies_the_highlighted_fix_and_a_model_change_offers_undo(cwd_tmp, monkeypatch):
    pin_machine(monkeypatch)
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Model")
        await wait_for(pilot, lambda: step.detection is not None)
        base = step.query_one("#model-base", Input)
        await tab_to(pilot, base)
        await pilot.press("end", "ctrl+u", *"qwen2.5-7b")
        await pilot.pause()
        await _choose(pilot, step.query_one("#model-gpu", Select), "catalog: T4")
        fixes = step.query_one("#model-fixes", OptionList)
        assert fixes.option_count >= 2
        first = next(i for i in range(fixes.option_count) if not fixes.get_option_at_index(i).disabled)
        assert fixes.highlighted == first                          # the first usable fix is highlighted
        before = app.state.config.model_dump()
        await tab_to(pilot, fixes)
        await pilot.press("enter")                                 # Enter applies it, no Home needed
        await pilot.pause()
        assert step.applied and app.state.config.model_dump() != before
        change, edits = step.applied[-1]
        await tab_to(pilot, base)
        await pilot.press("end", "ctrl+u", *"embedded")            # a different model after the fix
        await pilot.pause()
        undo = text_of(step.query_one("#model-undo", Static))
        assert change in undo and "u undoes it" in undo
        assert all(k in undo for k in edits)
        step.focus()
        await pilot.press("u")
        await pilot.pause()
        for path, (old, _new) in edits.items():
            section, name = path.split(".", 1)
            assert getattr(getattr(app.state.config, section), name) == old
