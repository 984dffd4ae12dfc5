"""The wizard's Export step through the Pilot: finished runs listed, a previous export's
manifest shown, and the never-overwrite rule enforced before any process starts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from textual.widgets import DataTable, Select, Static

from ftwizard.tui.app import available_steps

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config  # noqa: E402
from test_tui_app import app_for_tests, cwd_tmp, text_of, wait_for  # noqa: E402,F401


LONG_REASON = ("gguf-q8_0 answers in llama.cpp vs the merged model: greedy continuations differ on 1 of 5 prompts "
               "and top-1 tokens agree on 61.0% of positions (need identical text or 90%) -- eval prompt 2 (The "
               "app crashes when I upload a photo): first difference at token 7: trained 'high', export 'low'; "
               "trained text '{\"urgency\": \"high\"}<|im_end|>'; export text 'THE-END-OF-THE-REASON'")


def _finished_run(root: Path) -> Path:
    cfg = tiny_config(root, "lora")
    run = root / "runs" / "done"
    (run / "adapter").mkdir(parents=True)
    shutil.copy(cfg, run / "config.yaml")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "status.json").write_text(json.dumps({"state": "completed", "step": 4, "started_at": 1}))
    exp = run / "export"
    exp.mkdir()
    (exp / "manifest.json").write_text(json.dumps({
        "run": "done", "state": "failed", "warnings": [], "exports": {
            "adapter": {"state": "ok", "bytes": 13_000_000, "checks": [{"name": "x", "ok": True, "detail": "3/3 identical"}]},
            "gguf-q8_0": {"state": "failed", "reason": LONG_REASON}}}))
    return run


async def test_export_step_shows_runs_manifest_and_refuses_overwrite(cwd_tmp):
    titles = [c.TITLE for c in available_steps()]
    assert titles[-1] == "Export"
    run = _finished_run(cwd_tmp)
    (cwd_tmp / "runs" / "unfinished").mkdir()
    (cwd_tmp / "runs" / "unfinished" / "status.json").write_text(json.dumps({"state": "stopped"}))
    app = app_for_tests(runs_dir=cwd_tmp / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(len(titles) - 1):
            await pilot.press("ctrl+n")
        await pilot.pause()
        step = app.screen.query_one(f"#step-{len(titles) - 1}")
        sel = step.query_one("#export-run", Select)
        assert [str(p) for p, _ in sel._options if p] == ["done"]  # only finished runs
        table = step.query_one("#export-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(2)]
        assert rows[0][:3] == ["adapter", "ok", "13.0 MB"]
        assert rows[1][1] == "failed"
        # the full reason, wrapped in the details (never cut at a column): its last words are on screen
        details = step.query_one("#export-details", Static)
        assert "THE-END-OF-THE-REASON" in text_of(details)
        assert details.size.width <= 120 and details.size.height >= 3
        # every check box shows its state as a glyph, not by colour alone (NO_COLOR, monochrome themes)
        from textual.widgets import Checkbox

        boxes = list(step.query(Checkbox))
        assert len(boxes) >= 6 and {b.value for b in boxes} == {True, False}
        for box in boxes:
            assert box.render().plain[1] == ("X" if box.value else " "), (box.id, box.value)
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert "never overwritten" in text_of(step.query_one("#export-summary", Static))
        assert json.loads((run / "export" / "manifest.json").read_text())["state"] == "failed"  # untouched
