"""Cold start of the CLI: median wall time of `ftwizard --help` (budget: under 1 s).

    python bench/cold_start.py [--runs 15]

Prints a table; not a timed test. Record results in docs/benchmarks.md with the machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def time_cmd(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    cmds = {"python -m ftwizard --help": [sys.executable, "-m", "ftwizard", "--help"],
            "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"]}
    exe = shutil.which("ftwizard")
    if exe:
        cmds["ftwizard --help"] = [exe, "--help"]
        cmds["ftwizard train --help"] = [exe, "train", "--help"]
    print(f"{'command':40} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, cmd in cmds.items():
        time_cmd(cmd, 2)  # warm the page cache
        ts = time_cmd(cmd, args.runs)
        print(f"{name:40} {statistics.median(ts) * 1000:10.0f} {min(ts) * 1000:8.0f} {max(ts) * 1000:8.0f}")


if __name__ == "__main__":
    main()
