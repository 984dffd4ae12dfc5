"""The run-folder contract: torn event lines, died runs, listing, lookup."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ftwizard.errors import UserError
from ftwizard.rundir import EventReader, EventWriter, RunDir, find_run, latest_by_step, list_runs


def test_torn_last_line_is_skipped_then_read_when_complete(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.write("train", step=1, loss=2.0)
    with open(path, "ab") as f:
        f.write(b'{"kind": "train", "step": 2, "lo')  # a write in progress
    r = EventReader(path)
    assert [e["step"] for e in r.read_new()] == [1]
    with open(path, "ab") as f:
        f.write(b'ss": 1.5}\n')
    assert [e["step"] for e in r.read_new()] == [2]


def test_corrupt_line_from_a_crash_is_skipped_and_writer_repairs_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"kind": "train", "step": 1, "loss": 2.0}\n{"kind": "tr')  # crash mid-line
    w = EventWriter(path)  # a resumed trainer appends after a newline
    w.write("train", step=2, loss=1.0)
    r = EventReader(path)
    events = r.read_new()
    assert [e["step"] for e in events] == [1, 2] and r.skipped == 1


def test_latest_by_step_prefers_later_events():
    evs = [{"kind": "train", "step": 1, "loss": 3}, {"kind": "train", "step": 2, "loss": 2},
           {"kind": "train", "step": 2, "loss": 1.9}, {"kind": "eval", "step": 2, "eval_loss": 1}]
    assert [e["loss"] for e in latest_by_step(evs)] == [3, 1.9]


def test_dead_pid_reads_as_died(tmp_path):
    run = RunDir(tmp_path / "r")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    run.write_status(state="running", pid=p.pid, step=3)
    st = run.status()
    assert st["state"] == "died" and "gone" in st["message"]
    run.write_status(state="running", pid=os.getpid())
    assert run.status()["state"] == "running"


def test_find_run_errors_list_known_runs(tmp_path):
    RunDir(tmp_path / "alpha").write_status(state="completed")
    assert find_run("alpha", tmp_path).name == "alpha"
    assert [s.name for s in list_runs(tmp_path)] == ["alpha"]
    with pytest.raises(UserError) as ei:
        find_run("nope", tmp_path)
    assert "alpha" in ei.value.fix
