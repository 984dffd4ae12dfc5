"""Cold start of the wizard: process start to the first screen being visible (target < 1 s).

Runs the installed `ftwizard` in a private tmux server at 80x24 and polls the pane
every 5 ms until the Decide question is on screen, so it measures what a person sees:
interpreter start, imports, app build, the first paint. On a shared, busy machine the
wall time mostly measures the queue for a CPU, so the CPU seconds the wizard process
used until then are reported too (with the load average and a bare `python -c pass`).
Also reports the import time of `ftwizard.tui.app` and checks no heavy library loaded.

Usage: python bench/cold_start_tui.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

NEEDLE = "Have you tried a strong prompt"
HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes")


def first_paint(tmp: Path, i: int) -> tuple[float, float | None]:
    """(wall seconds, CPU seconds of the wizard process) from start to the first screen."""
    sock = str(tmp / f"s{i}")
    env = dict(os.environ, TERM="xterm-256color")

    def tmux(*a, check=True):
        return subprocess.run(["tmux", "-S", sock, *a], capture_output=True, text=True, env=env, check=check)

    tmux("new-session", "-d", "-s", "b", "-x", "80", "-y", "24", "-c", str(tmp), "sleep 60")
    try:
        t0 = time.perf_counter()
        tmux("respawn-pane", "-k", "-t", "b", "exec ftwizard --runs-dir runs")
        pid = int(tmux("display", "-p", "-t", "b", "#{pane_pid}").stdout.strip())
        while time.perf_counter() - t0 < 20:
            if NEEDLE in tmux("capture-pane", "-p", "-t", "b", check=False).stdout:
                wall = time.perf_counter() - t0
                try:
                    ct = psutil.Process(pid).cpu_times()
                    cpu = ct.user + ct.system
                except psutil.Error:
                    cpu = None
                return wall, cpu
            time.sleep(0.005)
        raise RuntimeError("the wizard did not show its first screen in 20 s")
    finally:
        tmux("kill-server", check=False)


def import_time() -> tuple[float, list[str]]:
    code = ("import sys, time; t=time.perf_counter(); import ftwizard.tui.app; d=time.perf_counter()-t; "
            f"print(d); print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    return float(out[0]), [m for m in out[1].split(",") if m]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not shutil.which("tmux") or not shutil.which("ftwizard"):
        print("needs tmux and the installed ftwizard command", file=sys.stderr)
        return 2
    imp, heavy = import_time()
    with tempfile.TemporaryDirectory() as tmp:
        got = [first_paint(Path(tmp), i) for i in range(args.runs)]
    times = [w for w, _ in got]
    cpus = [c for _, c in got if c is not None]
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - t
    res = {"first_paint_s_median": round(statistics.median(times), 3), "first_paint_s_max": round(max(times), 3),
           "cpu_s_to_first_paint_median": round(statistics.median(cpus), 3) if cpus else None,
           "bare_python_start_s": round(bare, 3), "load_average_1m": round(os.getloadavg()[0], 1),
           "runs": args.runs, "import_tui_app_s": round(imp, 3), "heavy_modules_imported": heavy}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:26} {v}")
    ok = res["first_paint_s_median"] < 1.0 and not heavy
    print("PASS" if ok else "FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
