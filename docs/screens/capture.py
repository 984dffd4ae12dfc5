"""Write an SVG screenshot of every wizard screen into this folder.

Uses the same deterministic scenes as the snapshot tests (tests/tui_scenes.py): a
prepared folder with the sample data, a bad data file and two finished runs.

    python docs/screens/capture.py [--size 80x24 --size 120x40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from _pytest.monkeypatch import MonkeyPatch  # noqa: E402
from tui_scenes import SCENES, pin_machine, prepare  # noqa: E402


async def shoot(scene, folder: Path, size: tuple[int, int], out: Path) -> None:
    app = scene.make(folder)
    async with app.run_test(size=size) as pilot:
        await scene.run_before(pilot)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", action="append", help="WxH; default: 80x24 and 120x40 (the design sizes)")
    args = ap.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in (args.size or ["80x24", "120x40"])]
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    mp = MonkeyPatch()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = prepare(Path(tmp))
            mp.chdir(folder)
            mp.setenv("FTWIZARD_CONFIG_DIR", str(folder / "config"))
            mp.setenv("FTWIZARD_STATE_DIR", str(folder / "state"))
            pin_machine(mp)
            for i, scene in enumerate(SCENES, 1):
                for size in sizes:
                    out = HERE / f"{i:02d}-{scene.name}-{size[0]}x{size[1]}.svg"
                    asyncio.run(shoot(scene, folder, size, out))
                    print(out.relative_to(HERE.parent.parent))
    finally:
        mp.undo()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
