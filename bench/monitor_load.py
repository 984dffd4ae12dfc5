"""Monitor under load: a run folder with 200,000 events.

Measures, for the live monitor of the wizard (`RunMonitor` over `RunWatch`):
  - catch-up: reading and folding all 200,000 events (chunked reads, bounded buffers);
  - memory: RSS growth and the points kept, after 20,000 vs 200,000 events (must not grow
    with the run's length);
  - redraw: one full redraw (plot built by plotext at the widget's size, metrics, log
    tail) in a headless app at 120x40, median and worst of 20 (target < 50 ms);
  - follow: a writer appends 100 events/s for 10 s while the app tails; the lag between
    the last step written and the last step shown (target: keeps up, lag < 1 s).

Usage: python bench/monitor_load.py [--events 200000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftwizard.rundir import EventWriter, RunDir  # noqa: E402
from ftwizard.tui.runwatch import RunWatch  # noqa: E402


def event(step: int, n: int) -> dict:
    return {"kind": "train", "time": time.time(), "step": step, "epoch": round(step / 1000, 4),
            "loss": 2.5 * math.exp(-step / (n / 3)) + 0.5 + 0.05 * math.sin(step), "learning_rate": 2e-4,
            "grad_norm": 0.8, "tokens_per_second": 1500.0, "memory_gb": 1.2, "elapsed_s": step * 0.1,
            "eta_s": (n - step) * 0.1}


def write_run(path: Path, n: int) -> RunDir:
    run = RunDir(path)
    path.mkdir(parents=True)
    with open(run.events, "wb") as f:
        for s in range(1, n + 1):
            f.write(orjson.dumps(event(s, n)) + b"\n")
            if s % 100 == 0:
                f.write(orjson.dumps({"kind": "eval", "step": s, "eval_loss": 2.0 * math.exp(-s / n) + 0.7}) + b"\n")
    run.log.write_text("".join(f"step {s}\n" for s in range(n - 200, n + 1)))
    run.write_status(state="completed", pid=None, step=n, max_steps=n, started_at=time.time() - 3600)
    return run


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def catch_up(run: RunDir) -> tuple[RunWatch, float]:
    w = RunWatch(run)
    t = time.perf_counter()
    while True:
        w.poll(max_chunks=64)
        if w.caught_up():
            break
    return w, time.perf_counter() - t


async def redraw_and_follow(run_done: RunDir, live_dir: Path) -> dict:
    from ftwizard.tui.app import make_app
    from ftwizard.tui.widgets.loss_plot import LossPlot
    from ftwizard.tui.widgets.monitor import RunMonitor

    out: dict = {}
    app = make_app(monitor=run_done.path, blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        while not (mon.watch.caught_up() and mon.watch.events_read > 0):
            await pilot.pause(0.1)
        await pilot.pause(0.6)
        plot = mon.query_one(LossPlot)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            mon.redraw()
            plot._cache = None
            plot.render()  # the plot is built at paint time; count it here
            times.append((time.perf_counter() - t) * 1000)
        out["redraw_ms_median"] = round(statistics.median(times), 2)
        out["redraw_ms_max"] = round(max(times), 2)
        out["plot_points_drawn"] = len(plot._train[0])

    # follow: 100 events/s for 10 s
    live = RunDir(live_dir)
    live_dir.mkdir()
    live.write_status(state="running", pid=os.getpid(), pid_started=psutil.Process().create_time(),
                      step=0, max_steps=1000)
    stop = threading.Event()
    written = {"step": 0}

    def writer():
        w = EventWriter(live.events)
        s = 0
        t0 = time.perf_counter()
        while not stop.is_set():
            s += 1
            w.write("train", **{k: v for k, v in event(s, 1000).items() if k not in ("kind", "time")})
            written["step"] = s
            time.sleep(max(0.0, t0 + s / 100 - time.perf_counter()))
        w.close()

    app = make_app(monitor=live.path, blink=False)
    lags = []
    async with app.run_test(size=(120, 40)) as pilot:
        mon = app.screen.query_one(RunMonitor)
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        t_end = time.perf_counter() + 10
        while time.perf_counter() < t_end:
            await pilot.pause(0.5)
            shown = mon.watch.step or 0
            lags.append((written["step"] - shown) / 100)  # seconds behind, at 100 events/s
        stop.set()
        th.join()
        await pilot.pause(0.6)
        out["follow_events_written"] = written["step"]
        out["follow_events_read"] = mon.watch.events_read
        out["follow_lag_s_median"] = round(statistics.median(lags), 3)
        out["follow_lag_s_max"] = round(max(lags), 3)
        out["redraws_in_10s"] = mon.redraws
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    res: dict = {"events": args.events}
    with tempfile.TemporaryDirectory() as tmp:
        small = write_run(Path(tmp) / "small", args.events // 10)
        big = write_run(Path(tmp) / "big", args.events)
        res["events_file_mb"] = round(big.events.stat().st_size / 2**20, 1)
        gc.collect()
        base = rss_mb()
        w_small, _ = catch_up(small)
        gc.collect()
        after_small = rss_mb()
        w_big, secs = catch_up(big)
        gc.collect()
        after_big = rss_mb()
        res["catch_up_s"] = round(secs, 2)
        res["catch_up_events_per_s"] = int(w_big.events_read / secs)
        res["points_kept_small"] = len(w_small.train)
        res["points_kept_big"] = len(w_big.train)
        res["rss_growth_mb_small"] = round(after_small - base, 1)
        res["rss_growth_mb_big"] = round(after_big - after_small, 1)
        del w_small, w_big
        res.update(asyncio.run(redraw_and_follow(big, Path(tmp) / "live")))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:28} {v}")
    ok = res["redraw_ms_median"] < 50 and res["follow_lag_s_median"] < 1.0 and res["points_kept_big"] <= 2 * 2048
    print("PASS" if ok else "FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
