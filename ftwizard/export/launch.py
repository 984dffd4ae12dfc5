"""Start the export worker (`python -m ftwizard.export.worker`) and read its outcome.

Light: the CLI and the wizard import this; torch and friends load only in the worker.
The worker writes progress lines to its stdout and the manifest to the export folder;
a failure the user can fix comes back as a UserError through a small JSON file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ftwizard.errors import UserError


@dataclass
class ExportRequest:
    run: Path
    formats: str = "adapter,merged,gguf,ollama"
    quant: str = "q8_0"
    out: Path | None = None
    force: bool = False
    dtype: str | None = None
    max_new_tokens: int | None = None   # None: sized from the run's data
    push_to_hub: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # absolute before they cross into the worker (and from there the converter and llama.cpp processes)
        self.run = Path(self.run).resolve()
        self.out = Path(self.out).resolve() if self.out else None

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.run) / "export"

    def argv(self, error_file: Path) -> list[str]:
        cmd = [sys.executable, "-m", "ftwizard.export.worker", str(self.run), "--format", self.formats,
               "--quant", self.quant, "--error-file", str(error_file)]
        if self.max_new_tokens:
            cmd += ["--max-new-tokens", str(self.max_new_tokens)]
        if self.out:
            cmd += ["--out", str(self.out)]
        if self.force:
            cmd.append("--force")
        if self.dtype:
            cmd += ["--dtype", self.dtype]
        if self.push_to_hub:
            cmd += ["--push-to-hub", self.push_to_hub]
        return cmd


def log_path(req: ExportRequest) -> Path:
    """The worker's stderr (warnings, and a traceback if it crashes) goes here, never to the terminal."""
    return Path(req.run) / "export.log"


def start(req: ExportRequest, stdout=None) -> tuple[subprocess.Popen, Path]:
    """Spawn the worker: progress lines to `stdout` (None: the terminal), everything else to export.log."""
    fd, err = tempfile.mkstemp(prefix="ftwizard-export-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **req.extra_env)
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    log = open(log_path(req), "a")
    try:
        log.write(f"--- export started {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(req.argv(Path(err))[3:])}\n")
        log.flush()
        proc = subprocess.Popen(req.argv(Path(err)), stdin=subprocess.DEVNULL, stdout=stdout, stderr=log, env=env,
                                text=True)
    finally:
        log.close()
    return proc, Path(err)


def outcome(proc: subprocess.Popen, err_file: Path, req: ExportRequest) -> dict:
    """The manifest once the worker is done; raises the worker's UserError if it stopped on one."""
    proc.wait()
    try:
        data = err_file.read_bytes()
    except OSError:
        data = b""
    finally:
        err_file.unlink(missing_ok=True)
    if data.strip():
        try:
            e = orjson.loads(data)
            raise UserError(e["error"], where=e.get("where") or str(log_path(req)), fix=e.get("fix"))
        except (orjson.JSONDecodeError, TypeError, KeyError):
            pass  # a worker killed while writing it: reported below from the log
    from ftwizard.export.manifest import read_manifest

    m = read_manifest(req.out_dir())
    if m is None or m.get("state") == "running":  # the worker died: say why, and never leave "running"
        why = _last_error_line(log_path(req)) or f"exit code {proc.returncode}"
        if m is not None:
            _mark_failed(req.out_dir(), m, why)
        raise UserError(f"the export stopped: {why}", where=str(log_path(req)),
                        fix="read the log for the whole story; fix the cause and run the same command with --force")
    return m


def _last_error_line(log: Path) -> str | None:
    """The last exception line of the worker's log ('ValueError: ...'), without the class name."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 64_000))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line and not line.startswith(("File ", "^", "---", "Traceback")) and not line.startswith(" "):
            head, sep, rest = line.partition(": ")
            return rest if sep and head.replace(".", "").replace("_", "").isalnum() and head[:1].isupper() else line
    return None


def _mark_failed(out: Path, m: dict, why: str) -> None:
    from ftwizard.export.manifest import NAME
    from ftwizard.fileio import atomic_write_bytes

    m = dict(m, state="failed", ended_at=time.time(), error=why)
    for e in (m.get("exports") or {}).values():
        if isinstance(e, dict) and e.get("state") == "running":
            e.update(state="failed", reason=why)
    try:
        atomic_write_bytes(Path(out) / NAME, orjson.dumps(m, option=orjson.OPT_INDENT_2))
    except (OSError, UserError):
        pass
