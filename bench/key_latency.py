"""Key latency of the wizard at 80x24 (issue 16: under 100 ms at every moment).

Drives the app with Textual's Pilot through the moments that used to stall: keys on the
Data step while the first lint runs (a tokenizer subprocess), typing and Tab in the
36-field Tune form, and step switches. For each key it reports the UI thread's CPU time
(load-proof) and the wall time until the key was handled and painted; the event loop's
longest stall (a 10 ms sampler) is reported per phase. Prints a table and the load.

Usage: python bench/key_latency.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


async def run() -> dict:
    from textual.widgets import Input

    from ftwizard.tui.app import make_app
    from ftwizard.tui.themes import theme_dirs

    app = make_app(runs_dir="runs", blink=False, theme_dirs=theme_dirs()[:1])
    rows: list[dict] = []
    lags: list[tuple[str, float]] = []
    phase = ["start"]

    async with app.run_test(size=(80, 24)) as pilot:
        stop = False

        async def sampler():
            last = time.perf_counter()
            while not stop:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                lags.append((phase[0], now - last - 0.01))
                last = now

        task = asyncio.create_task(sampler())

        async def keys(name: str, ks: list[str]):
            phase[0] = name
            for k in ks:
                c, t = time.thread_time(), time.perf_counter()
                await pilot.press(k)
                await pilot.pause()
                rows.append({"phase": name, "key": k, "cpu_ms": (time.thread_time() - c) * 1000,
                             "wall_ms": (time.perf_counter() - t) * 1000})

        await pilot.pause(0.5)
        await keys("step switch", ["ctrl+n", "ctrl+n"])
        step = app.screen.current_step()
        deadline = time.time() + 10
        while not step.busy and time.time() < deadline:
            await pilot.pause(0.05)
        await keys("during first lint", ["tab", "shift+tab", "end", "x", "backspace", "pagedown", "pagedown",
                                         "pageup", "tab", "down", "up"])
        await keys("step switch", ["ctrl+n"])
        form = app.screen.current_step()
        lr = form.query_one("#field-training-learning_rate").query_one(Input)
        lr.focus()
        await pilot.pause(0.3)
        await keys("typing in the form", ["end", "backspace", "5", "backspace", "4", "tab", "shift+tab", "tab"])
        await keys("step switch", ["ctrl+n", "ctrl+p", "ctrl+p", "ctrl+p"])
        stop = True
        await task
    out = {"load_1m": os.getloadavg()[0], "cpus": os.cpu_count(), "phases": {}}
    for name in dict.fromkeys(r["phase"] for r in rows):
        rs = [r for r in rows if r["phase"] == name]
        ls = [lag for p, lag in lags if p == name]
        out["phases"][name] = {
            "keys": len(rs),
            "cpu_ms_median": statistics.median(r["cpu_ms"] for r in rs),
            "cpu_ms_max": max(r["cpu_ms"] for r in rs),
            "wall_ms_median": statistics.median(r["wall_ms"] for r in rs),
            "wall_ms_max": max(r["wall_ms"] for r in rs),
            "loop_stall_ms_max": max(ls) * 1000 if ls else 0.0,
            "worst_key": max(rs, key=lambda r: r["cpu_ms"])["key"],
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        os.environ.setdefault("FTWIZARD_STATE_DIR", str(Path(tmp) / "state"))
        out = asyncio.run(run())
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"load average {out['load_1m']:.1f} on {out['cpus']} CPUs")
    print(f"{'phase':<20} {'keys':>4} {'CPU ms med':>10} {'CPU ms max':>10} {'wall ms med':>11} {'wall ms max':>11} "
          f"{'loop stall max':>14}  worst key")
    for name, p in out["phases"].items():
        print(f"{name:<20} {p['keys']:>4} {p['cpu_ms_median']:>10.0f} {p['cpu_ms_max']:>10.0f} "
              f"{p['wall_ms_median']:>11.0f} {p['wall_ms_max']:>11.0f} {p['loop_stall_ms_max']:>14.0f}  {p['worst_key']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
