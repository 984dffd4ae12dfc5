"""The run folder: the contract between the trainer process and every viewer.

    runs/<name>/config.yaml     resolved config (absolute paths), written once
                events.jsonl    append-only, one JSON object a line
                status.json     state, pid, times, last step, error; replaced atomically
                train.log       the trainer's stdout and stderr
                STOP            present when a graceful stop was asked for
                checkpoints/    checkpoint-<step>/ (Trainer format, resumable)
                adapter/        LoRA / QLoRA result; model/ for full fine-tuning
                eval/ export/   written by `ftwizard eval` and `ftwizard export`

Readers never share memory with the trainer: they tail `events.jsonl` (a torn last
line is skipped, never fatal) and read `status.json`. A state of starting, running or
stopping whose pid is gone is reported as "died".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from ftwizard.errors import UserError
from ftwizard.fileio import atomic_write_bytes

ACTIVE_STATES = ("starting", "running", "stopping")
FINAL_STATES = ("stopped", "completed", "failed", "died")
EVENT_KINDS = ("train", "eval", "system")


class RunDir:
    """Paths and state of one run folder."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    config = property(lambda self: self.path / "config.yaml")
    events = property(lambda self: self.path / "events.jsonl")
    status_file = property(lambda self: self.path / "status.json")
    log = property(lambda self: self.path / "train.log")
    stop_file = property(lambda self: self.path / "STOP")
    lock_file = property(lambda self: self.path / ".trainer.lock")
    checkpoints = property(lambda self: self.path / "checkpoints")
    adapter = property(lambda self: self.path / "adapter")
    model = property(lambda self: self.path / "model")
    eval_dir = property(lambda self: self.path / "eval")
    export_dir = property(lambda self: self.path / "export")

    def exists(self) -> bool:
        return self.status_file.is_file() or self.config.is_file()

    # ---- status ------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        try:
            return orjson.loads(self.status_file.read_bytes())
        except FileNotFoundError:
            return {"state": "unknown"}
        except orjson.JSONDecodeError:
            return {"state": "unknown", "message": "status.json is unreadable"}

    def write_status(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json (atomic replace; only the trainer calls this)."""
        status = self.read_status()
        if status.get("state") == "unknown":
            status = {}
        status.update(fields)
        status["updated_at"] = time.time()
        atomic_write_bytes(self.status_file, orjson.dumps(status, option=orjson.OPT_INDENT_2))
        return status

    def status(self) -> dict[str, Any]:
        """status.json with liveness applied: an active state whose process is gone is 'died'."""
        st = self.read_status()
        if st.get("state") in ACTIVE_STATES and not pid_alive(st.get("pid"), st.get("pid_started")):
            st = dict(st, state="died", message=(
                f"the trainer (pid {st.get('pid')}) is gone without a final state "
                f"(killed, out of memory, or the machine restarted); see {self.log}"
            ))
        return st

    def last_checkpoint(self) -> Path | None:
        cks = sorted(
            (p for p in self.checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and (p / "trainer_state.json").is_file()),
            key=lambda p: int(p.name.split("-")[-1]),
        )
        return cks[-1] if cks else None

    # ---- events ------------------------------------------------------------
    def iter_events(self) -> Iterator[dict[str, Any]]:
        """All complete, well-formed events so far (torn or corrupt lines skipped)."""
        reader = EventReader(self.events)
        yield from reader.read_new()


class EventReader:
    """Incremental reader of events.jsonl: remembers its offset, skips torn lines.

    A line without its newline yet is a write in progress: it is left for the next
    read. A complete line that is not JSON (a torn write from a crash) is skipped.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.skipped = 0

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        """Events completed since the last call; at most `max_bytes` are read (None: all)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read() if max_bytes is None else f.read(max_bytes)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            if max_bytes is not None and len(chunk) >= max_bytes:  # one absurdly long line: skip it rather than stall
                self.offset += len(chunk)
                self.skipped += 1
            return []
        self.offset += end + 1
        out = []
        for line in chunk[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.skipped += 1
                continue
            if isinstance(obj, dict):
                out.append(obj)
            else:
                self.skipped += 1
        return out


class EventWriter:
    """Append-only JSON-lines writer; each event is one write() of one full line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """If a crash left a line without newline, end it so the next event starts clean."""
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"kind": kind, "time": time.time(), **{k: v for k, v in fields.items() if v is not None}}
        os.write(self._fd, orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        return event

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def latest_by_step(events: list[dict[str, Any]], kind: str = "train") -> list[dict[str, Any]]:
    """Events of one kind, one per step, the latest winning (a resume after a crash re-logs steps)."""
    by_step: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("kind") == kind and isinstance(e.get("step"), int):
            by_step[e["step"]] = e
    return [by_step[s] for s in sorted(by_step)]


def pid_alive(pid: Any, started: Any = None) -> bool:
    """True if `pid` runs and (when known) was started at `started` (guards pid reuse)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if isinstance(started, (int, float)) and abs(proc.create_time() - started) > 1.0:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


@dataclass
class RunSummary:
    name: str
    path: Path
    state: str
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    started_at: float | None = None
    updated_at: float | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "state": self.state, "step": self.step,
            "max_steps": self.max_steps, "loss": self.loss, "eval_loss": self.eval_loss,
            "started_at": self.started_at, "updated_at": self.updated_at, "message": self.message,
        }


def summarize(run: RunDir) -> RunSummary:
    st = run.status()
    loss = eval_loss = None
    for e in run.iter_events():
        if e.get("kind") == "train" and e.get("loss") is not None:
            loss = e["loss"]
        if e.get("kind") == "eval" and e.get("eval_loss") is not None:
            eval_loss = e["eval_loss"]
    return RunSummary(
        name=run.name, path=run.path, state=st.get("state", "unknown"), step=st.get("step"),
        max_steps=st.get("max_steps"), loss=loss, eval_loss=eval_loss, started_at=st.get("started_at"),
        updated_at=st.get("updated_at"), message=st.get("message"),
    )


def list_runs(runs_dir: Path) -> list[RunSummary]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = [RunDir(p) for p in runs_dir.iterdir() if p.is_dir() and RunDir(p).exists()]
    out = [summarize(r) for r in found]
    out.sort(key=lambda s: s.started_at or 0, reverse=True)
    return out


def find_run(ref: str | Path, runs_dir: Path) -> RunDir:
    """A run by folder path or by name inside `runs_dir`; a clear error when there is none."""
    p = Path(ref)
    for cand in (p, Path(runs_dir) / str(ref)):
        if cand.is_dir() and RunDir(cand).exists():
            return RunDir(cand)
    names = [s.name for s in list_runs(runs_dir)][:10]
    raise UserError(
        f"no run named {str(ref)!r}",
        where=str(Path(runs_dir).resolve()),
        fix=("runs there: " + ", ".join(names)) if names else "start one with `ftwizard train CONFIG`, or pass --runs-dir",
    )
