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


def start(req: ExportRequest, stdout=None) -> tuple[subprocess.Popen, Path]:
    fd, err = tempfile.mkstemp(prefix="ftwizard-export-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **req.extra_env)
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    proc = subprocess.Popen(req.argv(Path(err)), stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT if stdout is not None else None, env=env, text=True)
    return proc, Path(err)


def outcome(proc: subprocess.Popen, err_file: Path, req: ExportRequest) -> dict:
    """The manifest once the worker is done; raises the worker's UserError if it stopped on one."""
    proc.wait()
    try:
        data = err_file.read_bytes()
    finally:
        err_file.unlink(missing_ok=True)
    if data.strip():
        e = orjson.loads(data)
        raise UserError(e["error"], where=e.get("where"), fix=e.get("fix"))
    from ftwizard.export.manifest import read_manifest

    m = read_manifest(req.out_dir())
    if m is None:
        raise UserError(f"the export worker exited (code {proc.returncode}) without a manifest",
                        where=str(req.out_dir()), fix="run it again; if it repeats, report the output above")
    return m
