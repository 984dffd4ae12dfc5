"""The compare view in the wizard's run picker: key c, tick runs, see them side by side.
Pilot checks of what it shows, and snapshots at 80x24 and 120x40."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from compare_fixture import make_runs  # noqa: E402


def _app(runs_dir: Path):
    from ftwizard.tui.app import make_app
    from ftwizard.tui.themes import theme_dirs

    return make_app(runs_dir=str(runs_dir), picker=True, blink=False, theme_dirs=theme_dirs()[:1])


async def _until(pilot, cond, timeout: float = 90.0) -> None:
    """Pause until cond() holds (a loaded machine can take many seconds), then let workers finish."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        try:
            if cond():
                break
        except Exception:  # a screen mid-change
            pass
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.3)


def _plotted(pilot, n: int) -> bool:
    from ftwizard.tui.screens.compare import CompareScreen

    scr = pilot.app.screen
    if not isinstance(scr, CompareScreen):
        return False
    cmp = scr.query_one("#compare-plot").cmp
    return bool(cmp) and len(cmp["runs"]) == n and len(scr.selected) == n


async def _open_compare(pilot, n_ticked: int = 2):
    from textual.widgets import DataTable

    await _until(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count == 3)
    await pilot.press("c")
    await _until(pilot, lambda: _plotted(pilot, n_ticked))


def shown(widget) -> str:
    """The text a widget shows on screen now."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


@pytest.fixture(autouse=True)
def own_run_index(tmp_path, monkeypatch):
    """The picker also lists every indexed run: each test gets an empty index of its own."""
    monkeypatch.setenv("FTWIZARD_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def runs_dir(tmp_path):
    d = tmp_path / "runs"
    make_runs(d)
    return d


async def test_c_opens_compare_with_two_runs_and_space_adds_a_third(runs_dir):
    from ftwizard.tui.screens.compare import CompareScreen

    app = _app(runs_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_compare(pilot)
        scr = app.screen
        assert isinstance(scr, CompareScreen)
        # newest first: the cursor's run (newest) and the one before it
        assert [Path(p).name for p in scr.selected] == ["lr-4e-4-r32", "lr-1e-4"]
        tables = shown(scr.query_one("#compare-tables"))
        assert "training.learning_rate" in tables and "lora.r" in tables
        assert "training.max_steps" in tables and "data.train" not in tables  # only keys that differ
        await pilot.press("end", "space")
        await _until(pilot, lambda: _plotted(pilot, 3))
        assert [r["name"] for r in scr.query_one("#compare-plot").cmp["runs"]] == ["lr-4e-4-r32", "lr-1e-4", "lr-2e-4"]
        assert "field_score" in shown(scr.query_one("#compare-tables"))  # the eval metric, run 3 has one
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CompareScreen)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_compare_snapshot(size, runs_dir, snap_compare, monkeypatch):
    pytest.importorskip("pytest_textual_snapshot")
    monkeypatch.chdir(runs_dir.parent)

    async def run_before(pilot):
        await _open_compare(pilot)
        await pilot.press("end", "space")
        await _until(pilot, lambda: _plotted(pilot, 3))
        await pilot.pause(0.3)

    assert snap_compare(_app(Path("runs")), terminal_size=size, run_before=run_before)
