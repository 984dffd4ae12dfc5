"""`train --json` / `monitor --json` keep the --json failure contract: a run that ends failed, died or
corrupt ends its event stream with one {"error", "where", "fix"} object."""

from __future__ import annotations

import io
import json

from ftwizard.monitoring import follow_run
from ftwizard.rundir import EventWriter, RunDir


def test_a_failed_run_ends_the_json_stream_with_one_error_object(tmp_path):
    run = RunDir(tmp_path / "x")
    run.path.mkdir()
    EventWriter(run.events).write("train", step=1, loss=2.0)
    run.write_status(state="failed", message="the data file vanished at step 3")
    out = io.StringIO()
    assert follow_run(run, json_lines=True, out=out, bar=False) == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["kind"] == "train"
    last = lines[-1]
    assert set(last) == {"error", "where", "fix"} and "vanished" in last["error"] and last["where"].endswith("train.log")


def test_a_completed_run_has_no_error_object(tmp_path):
    run = RunDir(tmp_path / "y")
    run.path.mkdir()
    run.write_status(state="completed")
    out = io.StringIO()
    assert follow_run(run, json_lines=True, out=out, bar=False) == 0 and "error" not in out.getvalue()
