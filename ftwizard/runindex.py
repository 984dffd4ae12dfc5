"""The per-user run index: every run this user started, whatever folder it was started from.

A run folder lives wherever its config's `runs_dir` points (relative paths: the folder the
user was in), so `ftwizard runs`, `ftwizard monitor NAME` and the wizard could only find a
run from the folder it started in. `start_run` registers each new run's absolute path here;
readers list, resolve and pick the newest active run from it.

    $FTWIZARD_STATE_DIR/runs.json   (default $XDG_STATE_HOME/ftwizard, ~/.local/state/ftwizard)

One small JSON file, changed under a `filelock` lock (two trainers starting at once both
land) and replaced atomically. A run whose folder was moved or deleted is pruned on the next
read, with a message for the user; an unreadable index is set aside (renamed) and rebuilt,
never a crash. The tests point FTWIZARD_STATE_DIR at a temporary folder (conftest.py), so
they never write into the real user's index.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ftwizard.errors import UserError
from ftwizard.rundir import ACTIVE_STATES, RunDir, RunSummary

INDEX_FILE = "runs.json"
MAX_ENTRIES = 1000      # the oldest are forgotten first (their folders stay where they are)
LOCK_TIMEOUT_S = 10.0


def state_dir() -> Path:
    """Where per-user state lives: FTWIZARD_STATE_DIR, else $XDG_STATE_HOME/ftwizard (XDG base dirs)."""
    env = os.environ.get("FTWIZARD_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ftwizard"


def index_path() -> Path:
    return state_dir() / INDEX_FILE


def abs_run_path(run: RunDir | Path | str) -> str:
    """The run folder as an absolute path, for the "started" notice and the quit dialog:
    a relative `runs/NAME` means nothing from another folder."""
    path = run.path if isinstance(run, RunDir) else Path(run)
    return str(path.expanduser().resolve())


def _lock():
    from filelock import FileLock

    d = state_dir()
    d.mkdir(parents=True, exist_ok=True)
    return FileLock(str(d / (INDEX_FILE + ".lock")), timeout=LOCK_TIMEOUT_S)


def _read(notes: list[str] | None = None) -> list[dict[str, Any]]:
    p = index_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        entries = data.get("runs") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError("no 'runs' list")
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str)]
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        aside = p.with_name(f"{INDEX_FILE}.unreadable-{int(time.time())}")
        try:
            os.replace(p, aside)
            where = f"; the old file is kept as {aside}"
        except OSError:
            where = ""
        if notes is not None:
            notes.append(f"the run index {p} was unreadable ({e}); starting a new one{where}")
        return []


def _write(entries: list[dict[str, Any]]) -> None:
    from ftwizard.fileio import atomic_write_text

    entries = sorted(entries, key=lambda e: e.get("registered_at") or 0)[-MAX_ENTRIES:]
    atomic_write_text(index_path(), json.dumps({"version": 1, "runs": entries}, indent=1))


def register(run: RunDir | Path | str) -> None:
    """Remember a run folder (absolute path). Never fails a start: an index that cannot be written
    only means the run is found from its own folder, as before (said on stderr)."""
    import sys

    path = abs_run_path(run)
    try:
        with _lock():
            entries = [e for e in _read() if e.get("path") != path]
            entries.append({"name": Path(path).name, "path": path, "registered_at": time.time()})
            _write(entries)
    except Exception as e:  # noqa: BLE001 - the index is a convenience; the run itself must not fail
        print(f"note: could not add the run to the run index {index_path()} ({e})", file=sys.stderr)


def indexed_runs(extra_dirs: list[Path] | tuple = ()) -> tuple[list[RunSummary], list[str]]:
    """Every indexed run (plus any run folder in `extra_dirs`, which is then indexed too), newest
    first, and messages about runs pruned because their folder is gone. Never raises."""
    from ftwizard.rundir import summarize

    notes: list[str] = []
    local: list[str] = []
    for d in extra_dirs:
        try:
            d = Path(d)
            if d.is_dir():
                local += [abs_run_path(p) for p in d.iterdir() if p.is_dir() and RunDir(p).exists()]
        except OSError:
            continue
    try:
        with _lock():
            entries = _read(notes)
            keep, changed = [], False
            for e in entries:
                if RunDir(e["path"]).exists():
                    keep.append(e)
                else:
                    changed = True
                    notes.append(f"run {e.get('name')} is gone from {e['path']} (moved or deleted): "
                                 "removed from the run index")
            known = {e["path"] for e in keep}
            for path in local:
                if path not in known:
                    keep.append({"name": Path(path).name, "path": path, "registered_at": time.time()})
                    known.add(path)
                    changed = True
            if changed:
                _write(keep)
    except Exception as e:  # noqa: BLE001 - a locked or read-only state folder: list what can be seen
        notes.append(f"the run index {index_path()} could not be updated ({e})")
        keep = [{"path": p} for p in dict.fromkeys(local)]
    out = []
    for e in keep:
        try:
            out.append(summarize(RunDir(e["path"])))
        except Exception as exc:  # noqa: BLE001 - one broken folder never hides the others
            notes.append(f"run folder {e['path']} could not be read ({exc})")
    out.sort(key=lambda s: s.started_at or 0, reverse=True)
    return out, notes


def resolve_run(ref: str | Path, runs_dir: Path | None = None) -> RunDir:
    """A run by folder path, by name in `runs_dir`, or by name in the index (from any folder).
    Two indexed runs with that name: a clear error listing their folders."""
    p = Path(ref).expanduser()
    cands = [p] + ([Path(runs_dir) / str(ref)] if runs_dir is not None else [])
    for cand in cands:
        if cand.is_dir() and RunDir(cand).exists():
            return RunDir(cand)
    runs, _ = indexed_runs([runs_dir] if runs_dir is not None else [])
    named = [r for r in runs if r.name == str(ref) or abs_run_path(r.path) == abs_run_path(p)]
    if len(named) == 1:
        return RunDir(named[0].path)
    if len(named) > 1:
        raise UserError(f"{len(named)} runs are named {str(ref)!r}", where=", ".join(str(r.path) for r in named),
                        fix="name the run by its folder")
    here = abs_run_path(runs_dir) if runs_dir is not None else None
    runs.sort(key=lambda r: abs_run_path(Path(r.path).parent) != here)  # this folder's runs first
    names = [r.name for r in runs][:10]
    raise UserError(
        f"no run named {str(ref)!r}",
        where=str(Path(runs_dir).resolve()) if runs_dir is not None else str(index_path()),
        fix=("known runs: " + ", ".join(names)) if names else "start one with `ftwizard train CONFIG`",
    )


def newest_active(runs_dir: Path | None = None) -> RunDir | None:
    """The most recently started run that is still starting, running or stopping (from anywhere)."""
    runs, _ = indexed_runs([runs_dir] if runs_dir is not None else [])
    active = [r for r in runs if r.state in ACTIVE_STATES]
    return RunDir(active[0].path) if active else None
