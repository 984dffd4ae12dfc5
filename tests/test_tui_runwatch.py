"""The monitor's model of a run (no Textual): bounded buffers, tailing, warnings."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ftwizard.rundir import EventWriter, RunDir
from ftwizard.tui.runwatch import DecimatingSeries, RunWatch, format_duration, last_losses

sys.path.insert(0, str(Path(__file__).parent))
from tui_fakerun import write_history  # noqa: E402


def test_decimating_series_stays_bounded_and_keeps_the_whole_range():
    s = DecimatingSeries(capacity=100)
    for i in range(1, 100_001):
        s.append(i, 1.0 / i)
    assert len(s) <= 100
    xs, ys = s.points()
    assert xs[0] == 1 and xs[-1] == 100_000 and ys[-1] == 1e-5   # first and exact latest point
    assert all(a < b for a, b in zip(xs, xs[1:]))
    xs, _ = s.points(max_points=20)
    assert len(xs) <= 21 and xs[-1] == 100_000


def test_a_resumed_run_relogging_steps_truncates_the_curve():
    s = DecimatingSeries(capacity=100)
    for i in range(1, 51):
        s.append(i, 2.0)
    for i in range(41, 61):  # resumed from a checkpoint at step 40
        s.append(i, 1.0)
    xs, ys = s.points()
    assert xs == sorted(set(xs)) and xs[-1] == 60
    assert all(y == 1.0 for x, y in zip(xs, ys) if x > 40)


def test_watch_reads_in_chunks_and_skips_torn_lines(tmp_path):
    run = RunDir(tmp_path / "r")
    write_history(run, 50)
    with open(run.events, "ab") as f:
        f.write(b'{"kind": "train", "step": 51, "loss": 0.4}\n{"kind": "tra')  # a write in progress
    w = RunWatch(run)
    while w.poll(max_chunks=1):
        pass
    assert w.step == 51 and w.state == "completed" and w.reader.skipped == 0
    assert w.log_tail[-1] == "step 50"
    assert len(w.train) == 51 and math.isclose(w.train.points()[1][-1], math.log10(0.4))


def test_warnings_overfitting_nan_throughput_died(tmp_path):
    run = RunDir(tmp_path / "o")
    write_history(run, 100, eval_every=10, overfit=True)
    w = RunWatch(run)
    w.poll(max_chunks=100)
    assert [x.key for x in w.warnings()] == ["overfitting"]

    run = RunDir(tmp_path / "n")
    run.path.mkdir()
    ew = EventWriter(run.events)
    for s in range(1, 20):
        ew.write("train", step=s, loss=1.0 if s < 15 else float("nan"),  # NaN reaches the file as null
                 tokens_per_second=1000.0 if s < 14 else 100.0)
        if s == 15:
            ew.write("system", event="nan", step=s)  # what the trainer's callback adds
    run.write_status(state="running", pid=2**22 + 4321, step=19)  # no such process
    w = RunWatch(run)
    w.poll(max_chunks=100)
    keys = [x.key for x in w.warnings()]
    assert "died" in keys and "nan" in keys and w.nan_step == 15
    assert "throughput" not in keys  # only judged while the run is alive

    w.status = dict(w.status, state="running")  # judged as if alive: the collapse shows
    assert "throughput" in [x.key for x in w.warnings()]


def test_last_losses_reads_only_the_tail(tmp_path):
    run = RunDir(tmp_path / "t")
    write_history(run, 3000, eval_every=100)
    loss, eval_loss = last_losses(run, tail_bytes=4096)
    assert loss is not None and eval_loss is not None
    assert last_losses(RunDir(tmp_path / "missing")) == (None, None)


def test_format_duration():
    assert [format_duration(x) for x in (None, 5, 75, 3725)] == ["-", "5s", "1m15s", "1h02m"]
