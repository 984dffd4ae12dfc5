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
# "corrupt": the run folder cannot be read (status.json garbled, missing, a folder...) and no
# trainer holds it; listed with what is wrong, and every follower ends on it instead of waiting.
FINAL_STATES = ("stopped", "completed", "failed", "died", "corrupt")
KNOWN_STATES = ACTIVE_STATES + FINAL_STATES
EVENT_KINDS = ("train", "eval", "system")
STATUS_MAX_BYTES = 1 << 20  # status.json is a few hundred bytes
# An unreadable status younger than this may be a run being set up: followers wait this long.
UNREADABLE_GRACE_S = 10.0
# Event and status fields that must be numbers; a corrupt value is dropped, never shown or summed.
NUMERIC_FIELDS = ("step", "max_steps", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm",
                  "tokens_per_second", "memory_gb", "eta_s", "time", "pid", "pid_started", "started_at",
                  "updated_at", "finished_at")
_INT_FIELDS = ("step", "max_steps", "pid")


def read_run_file(path: Path, max_bytes: int) -> bytes:
    """Read a small run-folder file without ever blocking: a pipe, a folder or a huge file is refused.

    Raises OSError (FileNotFoundError when absent) or ValueError with what is wrong. Opened
    non-blocking so a FIFO put in place of the file cannot hang a reader in open().
    """
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ValueError("is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("is not a regular file (a pipe or device)")
        if st.st_size > max_bytes:
            raise ValueError(f"is {st.st_size:,} bytes (expected at most {max_bytes:,})")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    finally:
        os.close(fd)


def clean_fields(obj: dict[str, Any]) -> list[str]:
    """Drop fields whose value has the wrong type (a string where a number belongs); say which."""
    bad = []
    for k in NUMERIC_FIELDS:
        if k not in obj or obj[k] is None:
            continue
        v = obj[k]
        ok = isinstance(v, int) if k in _INT_FIELDS else isinstance(v, (int, float))
        if not ok or isinstance(v, bool):
            bad.append(f"{k}={str(v)[:30]!r}")
            del obj[k]
    return bad


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
        """A run folder: it has a status or a config (even a damaged one, which is then listed as corrupt)."""
        return self.status_file.exists() or self.config.is_file()

    # ---- status ------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        """status.json as written; {"state": "unknown" | "corrupt", "message": why} when it cannot be used."""
        try:
            raw = read_run_file(self.status_file, STATUS_MAX_BYTES)
        except FileNotFoundError:
            return {"state": "unknown", "message": f"{self.status_file} is missing"}
        except ValueError as e:
            return {"state": "corrupt", "message": f"{self.status_file} {e}"}
        except OSError as e:
            return {"state": "corrupt", "message": f"{self.status_file}: {e.strerror}"}
        try:
            st = orjson.loads(raw)
        except orjson.JSONDecodeError:
            what = "empty" if not raw.strip() else "not valid JSON (truncated or garbled)"
            return {"state": "corrupt", "message": f"{self.status_file} is {what}"}
        if not isinstance(st, dict):
            return {"state": "corrupt", "message": f"{self.status_file} holds a JSON {_kind(st)}, not an object"}
        state = st.get("state")
        if state not in KNOWN_STATES:
            shown = "no state" if state is None else f"the unknown state {str(state)[:40]!r}"
            return dict(st, state="corrupt", message=f"{self.status_file} has {shown} "
                        f"(known: {', '.join(KNOWN_STATES[:-1])})")
        bad = clean_fields(st)
        if bad:
            st["message"] = ((str(st["message"]) + "; ") if st.get("message") else "") + \
                f"status.json fields with a wrong type were ignored: {', '.join(bad)}"
        if st.get("message") is not None and not isinstance(st["message"], str):
            st["message"] = str(st["message"])
        return st

    def write_status(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json (atomic replace; only the trainer calls this)."""
        status = self.read_status()
        if status.get("state") in ("unknown", "corrupt"):
            status = {}
        status.update(fields)
        status["updated_at"] = time.time()
        atomic_write_bytes(self.status_file, orjson.dumps(status, option=orjson.OPT_INDENT_2))
        return status

    def status(self) -> dict[str, Any]:
        """status.json with liveness applied.

        An active state whose process is gone is 'died'. A status that cannot be read (missing,
        empty, garbled, a folder, an unknown state) is 'unknown' (followers keep waiting) while
        the trainer lock is held or the folder is younger than UNREADABLE_GRACE_S, else
        'corrupt', a final state: nobody waits forever on a run no process will ever finish.
        """
        st = self.read_status()
        if st.get("state") in ACTIVE_STATES and not pid_alive(st.get("pid"), st.get("pid_started")):
            st = dict(st, state="died", message=(
                f"the trainer (pid {st.get('pid')}) is gone without a final state "
                f"(killed, out of memory, or the machine restarted); see {self.log}"
            ))
        elif st.get("state") in ("unknown", "corrupt"):
            live = self._trainer_lock_held() or pid_alive(st.get("pid"), st.get("pid_started"))
            if live or time.time() - self._newest_mtime() < UNREADABLE_GRACE_S:
                st = dict(st, state="unknown")
            else:
                st = dict(st, state="corrupt", message=(st.get("message") or "status.json cannot be read") +
                          "; no trainer is running for it")
        return st

    def require_readable(self) -> dict[str, Any]:
        """The status, or a UserError naming what is wrong when the run folder is corrupt.

        For commands that act on one run (monitor, stop, resume, eval, export): a damaged run is
        reported once, with its files, instead of followed, evaluated or exported.
        """
        st = self.status()
        raw = self.read_status()
        if st.get("state") == "unknown" and not (self._trainer_lock_held() or pid_alive(raw.get("pid"))):
            st = dict(st, state="corrupt")  # no grace period for a one-shot command: nobody is writing it
        if st.get("state") == "corrupt":
            raise UserError(f"run {self.name} cannot be read: {st.get('message')}", where=str(self.path),
                            fix="look at the file named above; checkpoints/ and the adapter/ or model/ folder of a "
                                "finished run are still usable (`ftwizard resume` reads the checkpoints)")
        return st

    def _trainer_lock_held(self) -> bool:
        """Whether a trainer holds this run's lock (probed without creating the lock file)."""
        import fcntl

        try:
            fd = os.open(self.lock_file, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def _newest_mtime(self) -> float:
        t = 0.0
        for p in (self.path, self.status_file, self.config):
            try:
                t = max(t, p.stat().st_mtime)
            except OSError:
                pass
        return t

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
        self.skipped_fields = 0
        self.problem: str | None = None

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        """Events completed since the last call; at most `max_bytes` are read (None: all).

        Never blocks and never raises on a damaged folder: events.jsonl being a folder or a
        pipe is recorded in `problem`; a line that is not an object, or a field with a
        wrong type (a string where a number belongs), is skipped or dropped and counted.
        """
        import stat

        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return []
        except OSError as e:
            self.problem = f"{self.path}: {e.strerror}"
            return []
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                self.problem = f"{self.path} is {'a folder' if stat.S_ISDIR(mode) else 'not a regular file'}"
                return []
            with os.fdopen(fd, "rb", closefd=False) as f:
                f.seek(self.offset)
                chunk = f.read() if max_bytes is None else f.read(max_bytes)
        except OSError as e:
            self.problem = f"{self.path}: {e.strerror}"
            return []
        finally:
            os.close(fd)
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
                if clean_fields(obj):
                    self.skipped_fields += 1
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


SAFETENSORS_MAX_HEADER = 100 << 20  # safetensors refuses headers above 100 MB too


def damaged_model_file(folder: Path) -> tuple[Path, str] | None:
    """(file, what is wrong) for the first damaged file of a checkpoint or adapter folder, else None.

    Reads only headers: each *.json must parse as an object, each *.safetensors must start
    with an 8-byte header length that fits the file, followed by that much JSON. This is what
    loading would trip over with a bare `SafetensorError: header too large` or `JSONDecodeError`.
    """
    folder = Path(folder)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors"))
    except OSError as e:
        return folder, e.strerror or "cannot be read"
    for p in files:
        try:
            if p.suffix == ".json":
                if p.stat().st_size > STATUS_MAX_BYTES * 64:
                    continue  # big tokenizer vocabularies: not ours to vet
                obj = orjson.loads(read_run_file(p, STATUS_MAX_BYTES * 64))
                if not isinstance(obj, dict):
                    return p, "holds JSON that is not an object"
            else:
                size = p.stat().st_size
                with open(p, "rb") as f:
                    head = f.read(8)
                    if len(head) < 8:
                        return p, f"is {size} bytes, too short for a safetensors file (truncated?)"
                    n = int.from_bytes(head, "little")
                    if n > SAFETENSORS_MAX_HEADER or n > size - 8:
                        return p, "has a damaged header (not a complete safetensors file: truncated or overwritten)"
                    if not isinstance(orjson.loads(f.read(n)), dict):
                        return p, "has a damaged header (not a safetensors file)"
        except orjson.JSONDecodeError:
            return p, "is not valid JSON" if p.suffix == ".json" else "has a damaged header (not a safetensors file)"
        except (OSError, ValueError) as e:
            return p, getattr(e, "strerror", None) or str(e)
    return None


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
            "divergence": self.extra.get("divergence"),  # the trainer's divergence verdict, if any
        }


def summarize(run: RunDir) -> RunSummary:
    """One run's row for `ftwizard runs`; a damaged folder gives a 'corrupt' row saying what is wrong."""
    st = run.status()
    loss = eval_loss = None
    reader = EventReader(run.events)
    for e in reader.read_new():
        if e.get("kind") == "train" and e.get("loss") is not None:
            loss = e["loss"]
        if e.get("kind") == "eval" and e.get("eval_loss") is not None:
            eval_loss = e["eval_loss"]
    message = st.get("message")
    state = st.get("state", "unknown")
    if reader.problem:
        message = ((message + "; ") if message else "") + reader.problem
        if state not in ACTIVE_STATES and state != "unknown":
            state = "corrupt"
    return RunSummary(
        name=run.name, path=run.path, state=state, step=st.get("step"),
        max_steps=st.get("max_steps"), loss=loss, eval_loss=eval_loss, started_at=st.get("started_at"),
        updated_at=st.get("updated_at"), message=message,
        extra={"divergence": st["divergence"]} if isinstance(st.get("divergence"), dict) else {},
    )


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "true/false", type(None): "null"}.get(
        type(value), "number")


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every run in `runs_dir`, newest first; one unreadable run folder never hides the others."""
    runs_dir = Path(runs_dir)
    try:
        if not runs_dir.is_dir():
            return []
        entries = list(runs_dir.iterdir())
    except OSError as e:
        raise UserError(f"cannot read the runs folder: {e.strerror}", where=str(runs_dir),
                        fix="check its permissions (ls -ld), or pass --runs-dir DIR") from None
    out = []
    for p in entries:
        try:
            if not (p.is_dir() and RunDir(p).exists()):
                continue
            out.append(summarize(RunDir(p)))
        except OSError as e:
            out.append(RunSummary(name=p.name, path=p, state="corrupt", message=f"cannot read {p}: {e.strerror}"))
    out.sort(key=lambda s: s.started_at or 0, reverse=True)
    return out


def find_run(ref: str | Path, runs_dir: Path) -> RunDir:
    """A run by folder path, by name inside `runs_dir`, or by name in the per-user run index
    (ftwizard.runindex: every run started from any folder); a clear error when there is none."""
    from ftwizard.runindex import resolve_run

    return resolve_run(ref, runs_dir)
