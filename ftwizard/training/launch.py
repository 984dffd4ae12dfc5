"""Start, stop and resume trainer processes. Light: the CLI and the TUI import this.

A run is a folder plus a trainer process that writes it. `start_run` creates the
folder (never reusing one: nothing is overwritten), saves the resolved config and
spawns `python -m ftwizard.training.worker`. Detached runs get their own session
(`start_new_session`), so closing the terminal or losing SSH does not reach them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ftwizard.config import RunConfig, load_config
from ftwizard.errors import UserError
from ftwizard.rundir import ACTIVE_STATES, RunDir

if TYPE_CHECKING:
    from ftwizard.training.distributed import LaunchSpec


def new_run_dir(cfg: RunConfig) -> RunDir:
    runs_dir = Path(cfg.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    if cfg.name:
        path = runs_dir / cfg.name
        if path.exists():
            raise UserError(f"run folder {path} already exists (runs are never overwritten)",
                            fix=f"choose another name (--name), or `ftwizard resume {cfg.name}` to continue it")
        path.mkdir()
        return RunDir(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = runs_dir / (f"{cfg.model.method}-{stamp}" + (f"-{i + 1}" if i else ""))
        try:
            path.mkdir()
            return RunDir(path)
        except FileExistsError:
            continue
    raise UserError(f"could not create a run folder in {runs_dir}")


def _spawn(run: RunDir, resume: bool, detach: bool) -> subprocess.Popen:
    # An absolute path: the worker runs with the run folder as its working directory.
    cmd = [sys.executable, "-m", "ftwizard.training.worker", str(run.path.resolve())] + (["--resume"] if resume else [])
    log = open(run.log, "ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # OpenMP threads that spin while waiting stall a CPU run to a crawl when anything else
    # competes for the cores (measured: 80 s against 6 s for the same generation at load 18).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=detach, close_fds=True, cwd=str(run.path))
    finally:
        log.close()


def wait_started(run: RunDir, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until the trainer has claimed the run (status has its pid), or report why it did not."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = run.read_status()
        if st.get("pid") == proc.pid:
            return
        if proc.poll() is not None:
            tail = run.log.read_text(errors="replace").strip().splitlines()[-3:] if run.log.exists() else []
            raise UserError("the trainer exited before starting: " + (" | ".join(tail) or f"exit code {proc.returncode}"),
                            where=str(run.log))
        time.sleep(0.05)


def check_inputs(cfg: RunConfig) -> None:
    """Fail before a process starts (and before any folder is made) on inputs that cannot work."""
    for field, path in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{field} file not found: {path}", where=field, fix="check the path in the config")


def start_run(cfg: RunConfig, detach: bool = True, preflight=None, spec: "LaunchSpec | None" = None, *,
              force: bool = False, config_path: str | None = None, stream=None,
              isolated: bool = False) -> tuple[RunDir, subprocess.Popen]:
    """Create the run folder and start its trainer; with `spec`, a torchrun launch (see distributed.py).

    Every start passes the pre-flight gate here (ftwizard.preflight.gate): `preflight` is a
    Report the caller already showed (re-checked if it was made for another config), or None
    to check now. Errors raise `PreflightBlocked` unless `force` (the user confirmed them).
    The result is always saved as preflight.json in the new run folder. isolated: any check the
    gate has to make runs in a child process (the wizard: its process never imports transformers)."""
    from ftwizard.preflight.gate import gate_start, save_preflight

    check_inputs(cfg)
    result = gate_start(cfg, preflight, force=force, config_path=config_path, stream=stream, isolated=isolated)
    if spec is not None:
        from ftwizard.training.distributed import check_spec, node_run_name, visible_gpu_count

        check_spec(spec, cfg.model.method, cfg.training.device, cfg.name, visible_gpu_count())
        if spec.node_rank > 0:
            cfg = cfg.model_copy(update={"name": node_run_name(cfg.name, spec.node_rank)})
    run = new_run_dir(cfg)
    from ftwizard.runindex import register

    register(run)  # found later from any folder (ftwizard runs / monitor NAME / the wizard)
    cfg = cfg.model_copy(update={"name": run.name, "runs_dir": run.path.parent.resolve()})
    cfg.save(run.config)
    if spec is not None:
        spec.save(run.path)
    save_preflight(run.path, result)  # what the pre-flight check knew, for the monitor and the evaluation
    run.write_status(state="starting", pid=None, started_at=time.time(), step=0, log=str(run.log))
    proc = _spawn(run, resume=False, detach=detach)
    wait_started(run, proc)
    return run, proc


def resume_run(run: RunDir, detach: bool = True, spec: "LaunchSpec | None" = None, *, force: bool = False,
               stream=None, isolated: bool = False) -> subprocess.Popen:
    """Continue from the last checkpoint; a distributed run relaunches as it was, or as `spec` says.
    A resume passes the pre-flight gate too (`gate_resume`: the run's preflight.json when it
    still holds, else a fresh check)."""
    st = run.status()
    state = st.get("state")
    if state in ACTIVE_STATES:
        raise UserError(f"run {run.name} is still {state} (pid {st.get('pid')})",
                        fix=f"follow it with `ftwizard monitor {run.name}`")
    if state == "completed":
        raise UserError(f"run {run.name} has completed; there is nothing to resume",
                        fix="start a new run (for more epochs, raise training.epochs in a copy of its config)")
    ckpt = run.last_checkpoint()
    if ckpt is None:
        raise UserError(f"run {run.name} has no checkpoint to resume from", where=str(run.checkpoints),
                        fix="start it again with `ftwizard train` (set training.save_every to keep checkpoints)")
    cfg = load_config(run.config)  # fail here, clearly, rather than in the background
    from ftwizard.preflight.gate import gate_resume

    gate_resume(run.path, cfg, force=force, stream=stream, isolated=isolated)
    if spec is not None:
        from ftwizard.training.distributed import check_spec, visible_gpu_count

        check_spec(spec, cfg.model.method, cfg.training.device, cfg.name, visible_gpu_count())
        spec.save(run.path)
    proc = _spawn(run, resume=True, detach=detach)
    wait_started(run, proc)
    return proc


def request_stop(run: RunDir) -> str:
    """Ask the trainer to stop gracefully: a checkpoint is saved at the current step."""
    st = run.status()
    state = st.get("state")
    if state not in ACTIVE_STATES:
        raise UserError(f"run {run.name} is not running (state: {state})")
    run.stop_file.write_text(f"{time.time()}\n")
    try:
        os.kill(int(st["pid"]), signal.SIGTERM)
    except (ProcessLookupError, KeyError, TypeError, ValueError, PermissionError):
        pass  # another host or gone: the STOP file still does it
    return state
