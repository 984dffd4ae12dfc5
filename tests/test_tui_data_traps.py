"""Issue 16 item 8 (Data step traps) and item 14/15 (PgUp/PgDn on the findings table, whole row ids).

Which files are in use is shown; a split asks before it replaces the configured eval file;
no "ready to train" while the eval file overlaps the training data; notifications are
sentences; new files go to the working folder, never next to the bundled sample data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from textual.widgets import DataTable, Static

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, cwd_tmp, go_to, text_of, wait_for  # noqa: E402,F401

from ftwizard.paths import sample_data_dir  # noqa: E402
from ftwizard.tui.screens.modals import ConfirmScreen  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"


async def test_split_asks_before_replacing_the_eval_file_and_writes_to_the_working_folder(cwd_tmp):
    sample = sample_data_dir()
    before = sorted(p.name for p in sample.iterdir())
    app = app_for_tests(runs_dir=cwd_tmp / "runs")              # the bundled sample data, eval file configured
    original_eval = app.state.config.data.eval
    assert original_eval is not None
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Data")
        files = text_of(step.query_one("#data-files", Static))
        assert "train.jsonl" in files and "eval.jsonl" in files     # which files are in use
        await pilot.press("ctrl+x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)                # asks first
        await pilot.press("n")
        await pilot.pause(0.5)
        assert app.state.config.data.eval == original_eval
        await pilot.press("ctrl+x")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: app.state.config.data.eval != original_eval, timeout=60)
        new_eval = Path(app.state.config.data.eval)
        assert new_eval.parent == cwd_tmp.resolve() and new_eval.is_file()   # the working folder
        message = next(n.message for n in app._notifications if n.message.startswith("Split"))
        assert "{" not in message and "held-out rows" in message and "training rows" in message
        assert str(new_eval) in text_of(step.query_one("#data-files", Static)).replace("\n", "")
    assert sorted(p.name for p in sample.iterdir()) == before     # nothing written next to the sample data


async def test_no_ready_to_train_while_eval_overlaps_training(cwd_tmp):
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    app.state.config.data.train = FIXTURES / "eval_overlap_train.jsonl"
    app.state.config.data.eval = FIXTURES / "eval_overlap_eval.jsonl"
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Data")
        await wait_for(pilot, lambda: step.report is not None, timeout=120)
        summary = text_of(step.query_one("#data-summary", Static))
        assert any(f["rule"] == "eval.overlap" for f in step.report["warnings"] + step.report["errors"])
        assert "ready to train" not in summary.replace("not ready", "") and "not ready" in summary


async def test_row_ids_are_whole_and_pgdn_pages_rows_from_the_findings_table(cwd_tmp):
    rows = [json.dumps({"messages": [{"role": "user", "content": f"Ticket {i} is about billing"},
                                     {"role": "assistant", "content": "billing"}]}) for i in range(400)]
    rows[310] = "this row is not json"
    (cwd_tmp / "big.jsonl").write_text("\n".join(rows) + "\n")
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    app.state.config.data.train = cwd_tmp / "big.jsonl"
    app.state.config.data.eval = None
    async with app.run_test(size=(80, 24)) as pilot:
        step = await go_to(pilot, "Data")
        await wait_for(pilot, lambda: step.report is not None, timeout=120)
        table = step.query_one("#lint-table", DataTable)
        table.focus()
        await pilot.pause(0.3)
        shown = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert " 311 " in shown                                     # not "31"
        await pilot.press("enter")                                  # jump to the finding's row
        await wait_for(pilot, lambda: step.row == 311)
        await pilot.press("pagedown")                               # pages rows, though the table has focus
        await wait_for(pilot, lambda: step.row == 312)
        assert app.focused is table
        await pilot.press("pageup", "pageup")
        await wait_for(pilot, lambda: step.row == 310)
