"""Sizes, times and agreement of every export format for one finished run.

    python bench/export_formats.py RUN [--quant f16,q8_0,q4_k_m,q5_k_m,q6_k] [--out DIR]

Runs `ftwizard export RUN --format all` into a fresh folder and prints one row per format from
its manifest: size, wall seconds, identical greedy continuations, top-1 agreement, max logit
difference and where the check ran (transformers or llama.cpp). Record the load (`uptime`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--quant", default="f16,q8_0,q4_k_m,q5_k_m,q6_k")
    ap.add_argument("--out")
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="ftwizard-export-bench-")) / "exp"
    load0 = os.getloadavg()[0]
    r = subprocess.run([sys.executable, "-m", "ftwizard", "export", a.run, "--format", "all", "--quant", a.quant,
                        "--out", str(out), "--json"], capture_output=True, text=True)
    if not r.stdout.strip():
        print(r.stderr[-3000:])
        return 1
    m = json.loads(r.stdout)
    print(f"export of {m['run']}: {m['state']} in {m.get('seconds')} s (load {load0:.1f} -> {os.getloadavg()[0]:.1f})")
    print(f"{'format':12} {'state':7} {'size':>10} {'seconds':>8} {'identical':>9} {'top-1':>7} {'max diff':>9}  where")
    for key, e in m["exports"].items():
        met = next((c["metrics"] for c in reversed(e.get("checks") or []) if "metrics" in c), {})
        where = "llama.cpp" if any("llama.cpp" in c.get("detail", "") for c in e.get("checks") or []) else \
            ("transformers" if met else "")
        b = e.get("bytes") or 0
        size = f"{b / 1e6:.1f} MB" if b >= 1e5 else f"{b / 1e3:.1f} kB"
        ident = f"{met['identical_continuations']}/{met['prompts']}" if met else ""
        top1 = f"{met['top1_agreement']:.1%}" if met else ""
        diff = f"{met['max_abs_logit_diff']:.3g}" if met.get("max_abs_logit_diff") is not None else ""
        print(f"{key:12} {e['state']:7} {size:>10} {e.get('seconds', 0):>8} {ident:>9} {top1:>7} {diff:>9}  {where}")
    c = m.get("consistency") or {}
    print("consistency:", c.get("summary"))
    return 0 if m["state"] == "completed" else 2


if __name__ == "__main__":
    raise SystemExit(main())
