"""Issue 16 item 6 (TUI part) and item 15: the runs picker finds runs from any folder through the
per-user run index, says when a registered run folder is gone, and draws whole cells.

conftest.py points FTWIZARD_STATE_DIR at a throw-away folder; this test uses its own.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from textual.widgets import DataTable

sys.path.insert(0, str(Path(__file__).parent))
from test_tui_app import app_for_tests, wait_for  # noqa: E402
from tui_fakerun import write_history  # noqa: E402

from ftwizard.rundir import RunDir  # noqa: E402


async def test_picker_lists_runs_from_other_folders_and_prunes_gone_ones(tmp_path, monkeypatch):
    from ftwizard import runindex

    monkeypatch.setenv("FTWIZARD_STATE_DIR", str(tmp_path / "state"))
    elsewhere = RunDir(tmp_path / "project-a" / "runs" / "qlora-pilot-from-a")
    write_history(elsewhere, 40, eval_every=10)
    runindex.register(elsewhere)
    gone = RunDir(tmp_path / "project-c" / "runs" / "deleted-run")
    write_history(gone, 5)
    runindex.register(gone)
    shutil.rmtree(tmp_path / "project-c")
    here = tmp_path / "project-b"
    write_history(RunDir(here / "runs" / "local"), 10)
    monkeypatch.chdir(here)

    app = app_for_tests(runs_dir=here / "runs", picker=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.loaded)
        await pilot.pause(0.3)
        table = screen.query_one(DataTable)
        names = [table.get_row_at(i)[0] for i in range(table.row_count)]
        assert sorted(names) == ["local", "qlora-pilot-from-a"]
        assert any("deleted-run" in n.message and "gone" in n.message for n in app._notifications)
        shown = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "qlora-pilot-from-a" in shown and "40/40" in shown     # whole cells, drawn at once
        assert table.border_subtitle == "← → scroll" or "folder" in shown
