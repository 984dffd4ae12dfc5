"""The per-user run index: runs are found from any folder; moved or deleted runs are pruned with a
message (never a crash); `monitor` without a name follows the newest active run; the tests' index
is a temporary folder, never the user's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ftwizard.rundir import RunDir


@pytest.fixture
def state(tmp_path, monkeypatch):
    d = tmp_path / "state"
    monkeypatch.setenv("FTWIZARD_STATE_DIR", str(d))
    return d


def fake_run(folder: Path, name: str, state: str = "completed", started: float | None = None, **status) -> RunDir:
    run = RunDir(folder / name)
    run.path.mkdir(parents=True)
    if state in ("running", "starting", "stopping"):  # alive: this very process holds it
        status.update(pid=os.getpid(), pid_started=psutil.Process().create_time())
    run.write_status(state=state, step=4, max_steps=8, started_at=started or time.time(), **status)
    return run


def cli(*args, cwd, env_state, **env_extra):
    env = dict(os.environ, FTWIZARD_STATE_DIR=str(env_state), **env_extra)
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_the_tests_never_touch_the_users_index():
    from ftwizard.runindex import index_path

    from pathlib import Path

    path = str(index_path())  # conftest.py: a throw-away folder for the session, and an empty one for each test
    assert "pytest-of-" in path or "ftwizard-test-state-" in path, path
    assert not path.startswith(str(Path.home() / ".local" / "state"))


def test_state_dir_follows_xdg(monkeypatch, tmp_path):
    from ftwizard.runindex import state_dir

    monkeypatch.delenv("FTWIZARD_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "ftwizard"


def test_a_run_is_found_from_any_folder(tmp_path, state):
    from ftwizard.runindex import abs_run_path, register, resolve_run

    (tmp_path / "project").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = fake_run(tmp_path / "project" / "runs", "demo")
    register(run)
    assert abs_run_path(run) == str(run.path.resolve())
    assert resolve_run("demo").path.resolve() == run.path.resolve()
    # the real commands, from another folder
    r = cli("runs", "--json", cwd=elsewhere, env_state=state)
    assert r.returncode == 0 and [x["name"] for x in json.loads(r.stdout)] == ["demo"]
    r = cli("monitor", "demo", "--plain", cwd=elsewhere, env_state=state)
    assert r.returncode == 0 and "run demo: completed" in r.stdout, r.stderr
    r = cli("runs", cwd=elsewhere, env_state=state, COLUMNS="300")
    assert "demo" in r.stdout and str((tmp_path / "project" / "runs").resolve()) in r.stdout  # the folder column says where it lives


def test_runs_found_by_folder_scan_join_the_index(tmp_path, state):
    from ftwizard.runindex import indexed_runs, resolve_run

    fake_run(tmp_path / "runs", "old")  # a run from before the index existed
    runs, notes = indexed_runs([tmp_path / "runs"])
    assert [r.name for r in runs] == ["old"] and notes == []
    assert resolve_run("old").path.resolve() == (tmp_path / "runs" / "old").resolve()


def test_moved_or_deleted_runs_are_pruned_with_a_message(tmp_path, state):
    import shutil

    from ftwizard.runindex import indexed_runs, register

    keep = fake_run(tmp_path / "runs", "keep", started=time.time() - 10)
    gone = fake_run(tmp_path / "runs", "gone")
    register(keep)
    register(gone)
    shutil.move(str(gone.path), str(tmp_path / "moved-away"))
    r = cli("runs", "--json", cwd=tmp_path / "runs", env_state=state)  # cwd has no ./runs: only the index
    assert r.returncode == 0 and [x["name"] for x in json.loads(r.stdout)] == ["keep"]
    assert "run gone is gone from" in r.stderr and "removed from the run index" in r.stderr
    assert indexed_runs() == (indexed_runs()[0], [])  # pruned once, silent afterwards
    r = cli("monitor", "gone", "--plain", "--no-follow", cwd=tmp_path, env_state=state)
    assert r.returncode == 1 and "no run named 'gone'" in r.stderr and "Traceback" not in r.stderr


def test_an_unreadable_index_is_set_aside_not_fatal(tmp_path, state):
    from ftwizard.runindex import index_path, indexed_runs, register

    state.mkdir(parents=True)
    index_path().write_text("{ not json")
    runs, notes = indexed_runs()
    assert runs == [] and "unreadable" in notes[0]
    assert list(state.glob("runs.json.unreadable-*"))
    register(fake_run(tmp_path / "runs", "fresh"))
    assert [r.name for r in indexed_runs()[0]] == ["fresh"]


def test_monitor_without_a_name_follows_the_newest_active_run(tmp_path, state):
    from ftwizard.runindex import newest_active, register

    for name, st, age in (("done", "completed", 5), ("older-live", "running", 20), ("live", "running", 10)):
        register(fake_run(tmp_path / "a" / "runs", name, st, started=time.time() - age))
    assert newest_active().name == "live"
    r = cli("monitor", "--json", "--no-follow", cwd=tmp_path, env_state=state)
    assert r.returncode == 0 and "newest active run, live" in r.stderr and "older-live" in r.stderr


def test_monitor_without_a_name_lists_candidates_when_none_is_active(tmp_path, state):
    from ftwizard.runindex import register

    register(fake_run(tmp_path / "runs", "finished"))
    r = cli("monitor", "--plain", cwd=tmp_path / "runs", env_state=state)
    assert r.returncode == 1 and "no run is active" in r.stderr and "finished (completed," in r.stderr


def test_two_processes_registering_at_once_lose_nothing(tmp_path, state):
    code = ("import sys; from ftwizard.runindex import register\n"
            "for i in range(15): register(sys.argv[1] + f'/r{i}')")
    env = dict(os.environ, FTWIZARD_STATE_DIR=str(state))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / side)], env=env) for side in ("a", "b")]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entries = json.loads((state / "runs.json").read_text())["runs"]
    assert len(entries) == 30 and len({e["path"] for e in entries}) == 30


def test_an_unwritable_state_folder_never_fails_a_start_or_a_listing(tmp_path, monkeypatch, capsys):
    from ftwizard.runindex import indexed_runs, register

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("FTWIZARD_STATE_DIR", str(blocker / "state"))
    run = fake_run(tmp_path / "runs", "here")
    register(run)  # says so, does not raise
    assert "could not add the run to the run index" in capsys.readouterr().err
    runs, notes = indexed_runs([tmp_path / "runs"])
    assert [r.name for r in runs] == ["here"] and "could not be updated" in notes[0]
