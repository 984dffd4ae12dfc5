"""Snapshot tests (pytest-textual-snapshot): every screen at 80x24 and 120x40.

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs before committing them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pytest_textual_snapshot")
sys.path.insert(0, str(Path(__file__).parent))

from tui_scenes import SCENES, pin_machine, prepare  # noqa: E402

from ftwizard.tui.app import available_steps  # noqa: E402

TITLES = {c.TITLE for c in available_steps()}
NEEDS = {"model": "Model", "data": "Data"}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("scenes"))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
def test_screen_snapshot(scene, size, scene_dir, snap_compare, monkeypatch):
    if scene.name in NEEDS and NEEDS[scene.name] not in TITLES:
        pytest.skip(f"{NEEDS[scene.name]} step not built")
    monkeypatch.chdir(scene_dir)
    monkeypatch.setenv("FTWIZARD_CONFIG_DIR", str(scene_dir / "config"))
    monkeypatch.setenv("FTWIZARD_STATE_DIR", str(scene_dir / "state"))  # the picker lists this folder's runs only
    pin_machine(monkeypatch)
    assert snap_compare(scene.make(scene_dir), terminal_size=size, run_before=scene.run_before)
