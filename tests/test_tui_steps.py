"""Model and Data steps through the Pilot, keys only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList, Select, Static

from ftwizard.tui.app import available_steps

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, tab_to, text_of, wait_for  # noqa: E402,F401

STEP_TITLES = [c.TITLE for c in available_steps()]


def _step(app, title):
    return app.screen.query_one(f"#step-{STEP_TITLES.index(title)}")


async def _go(pilot, title):
    for _ in range(STEP_TITLES.index(title)):
        await pilot.press("ctrl+n")
    await pilot.pause()


async def _choose(pilot, select: Select, label_start: str) -> None:
    """Open a Select with Enter and move to the option whose label starts with `label_start`."""
    await tab_to(pilot, select)
    await pilot.press("enter")
    await pilot.pause()
    labels = [str(p) for p, _ in select._options]
    target = next(i for i, lab in enumerate(labels) if lab.startswith(label_start))
    current = labels.index(next(str(p) for p, v in select._options if v == select.value))
    key = "down" if target > current else "up"
    for _ in range(abs(target - current)):
        await pilot.press(key)
    await pilot.press("enter")
    await pilot.pause()


@pytest.mark.skipif("Model" not in STEP_TITLES, reason="hardware estimate not built")
async def test_model_step_estimate_changes_and_a_fix_applies(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(100, 32)) as pilot:
        await _go(pilot, "Model")
        step = _step(app, "Model")
        await wait_for(pilot, lambda: step.detection is not None)
        lora_total = step.estimate.total_bytes
        await _choose(pilot, step.query_one("#model-method", Select), "full")
        assert app.state.config.model.method == "full"
        assert step.estimate.total_bytes > lora_total                 # the estimate follows the method
        base = step.query_one("#model-base", Input)
        await tab_to(pilot, base)
        await pilot.press("end", "ctrl+u", *"qwen2.5-7b")
        await pilot.pause()
        gpu = step.query_one("#model-gpu", Select)
        await _choose(pilot, gpu, "catalog: T4")
        verdict = text_of(step.query_one("#model-verdict", Static))
        assert "does NOT fit" in verdict and "T4" in verdict
        fixes = step.query_one("#model-fixes", OptionList)
        assert fixes.display and fixes.option_count >= 2
        before = step.estimate.total_bytes
        await tab_to(pilot, fixes)
        await pilot.press("home", "enter")
        await pilot.pause()
        assert step.estimate.total_bytes < before
        assert app.state.config.model.method in ("lora", "qlora") or app.state.config.model.base != "qwen2.5-7b"


def _bad_file(path: Path) -> Path:
    good = '{"messages": [{"role": "user", "content": "Ticket %d"}, {"role": "assistant", "content": "ok %d"}]}'
    lines = [good % (i, i) for i in range(6)]
    lines.insert(2, '{"messages": [{"role": "user", "content": "no answer"}]}')
    lines.insert(4, "this is not json")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.skipif("Data" not in STEP_TITLES, reason="data lint not built")
async def test_data_step_lints_a_bad_file_and_writes_a_fixed_copy(cwd_tmp):
    bad = _bad_file(cwd_tmp / "bad.jsonl")
    original = bad.read_bytes()
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await _go(pilot, "Data")
        step = _step(app, "Data")
        path = step.query_one("#data-path", Input)
        assert app.focused is path
        await pilot.press("end", "ctrl+u", *str(bad), "enter")
        table = step.query_one("#lint-table", DataTable)
        await wait_for(pilot, lambda: step.report is not None and step.report["file"].endswith("bad.jsonl"),
                       timeout=120)
        rules = [table.get_row_at(i)[1] for i in range(table.row_count)]
        assert "json.invalid" in rules and "roles.order" in rules
        summary = text_of(step.query_one("#data-summary", Static))
        assert "bad.jsonl" in summary and "errors" in summary
        await tab_to(pilot, table)
        target = rules.index("json.invalid")
        for _ in range(target):
            await pilot.press("down")
        await pilot.press("enter")                                  # jump to the row of the finding
        await wait_for(pilot, lambda: step.row == 5 and "not valid JSON" in text_of(step.query_one("#data-preview")))
        await pilot.press("ctrl+f")                                 # a fixed copy, never the original
        fixed = cwd_tmp / "bad.fixed.jsonl"
        await wait_for(pilot, lambda: Path(app.state.config.data.train) == fixed.resolve(), timeout=60)
        assert fixed.read_text().count("\n") == 6
    assert bad.read_bytes() == original
