"""Start the model server process and wait until it listens. Light (no torch, no starlette):
`ftwizard serve`, `ftwizard chat`, the Try step and the tests all start it through here,
so chat and serve are one design: a local OpenAI-compatible server, talked to over HTTP.

Chat and the Try step start it on 127.0.0.1, on a free port, with a random token passed
in the environment, so other local users cannot drive the model; `ftwizard serve` starts
it with the user's host, port and token, in the foreground.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ftwizard.errors import UserError
from ftwizard.serve.target import ServeTarget

TOKEN_ENV = "FTWIZARD_SERVE_TOKEN"  # same name as ftwizard.serve.worker.TOKEN_ENV (kept light here)


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    ready_file: Path
    log_path: Path | None
    host: str
    token: str | None
    info: dict = field(default_factory=dict)
    _tmp: str | None = None

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}/v1"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 900.0, poll: float = 0.1) -> dict:
        """Block until the server listens; UserError with its reason if it fails or dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = _read(self.ready_file)
            if info and "error" in info:
                self.stop(keep_log=True)
                raise UserError(f"the model server did not start: {info['error']}", where=str(self.log_path or ""),
                                fix=info.get("fix") or "see the log")
            if info and "port" in info:
                self.info = info
                return info
            if self.proc.poll() is not None:
                self.stop(keep_log=True)
                raise UserError(f"the model server exited (code {self.proc.returncode}) before it was ready",
                                where=str(self.log_path or "the output above"), fix="read the log for the reason")
            time.sleep(poll)
        self.stop(keep_log=True)
        raise UserError(f"the model server was not ready after {timeout:.0f} s", where=str(self.log_path or ""),
                        fix="the machine may be overloaded; try again")

    def stop(self, grace: float = 5.0, keep_log: bool = False) -> None:
        """End the server; its temporary folder goes too, unless keep_log (a failure names the log)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp and not keep_log:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if keep_log:
            self.ready_file.unlink(missing_ok=True)
        self._tmp = None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])  # type: ignore[arg-type]
        except (OSError, TypeError):
            return ""


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def start_server(target: ServeTarget, *, host: str = "127.0.0.1", port: int = 0, token: str | None = "random",
                 foreground: bool = False) -> ServerProcess:
    """Spawn `python -m ftwizard.serve.worker`. token='random' makes a private one (chat, Try step);
    None serves without auth. foreground=True shares this terminal's output (ftwizard serve)."""
    tmp = tempfile.mkdtemp(prefix="ftwizard-serve-")
    ready = Path(tmp) / "ready.json"
    if token == "random":
        token = secrets.token_urlsafe(24)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see evaluation.launch: spinning OpenMP threads starve a shared CPU
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token
    cmd = [sys.executable, "-m", "ftwizard.serve.worker", "--target", target.to_json(), "--host", host,
           "--port", str(port), "--ready-file", str(ready)]
    log_path = None
    cmd.append("--exit-with-parent")  # a server whose `ftwizard serve`, chat or wizard died is unreachable: end it too
    if foreground:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env)
    else:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, close_fds=True)
    return ServerProcess(proc, ready, log_path, host, token, _tmp=tmp)
