"""The trainer process: `python -m ftwizard.training.worker RUN_DIR [--resume]`.

It owns the run folder while it lives: holds an exclusive lock (a second trainer is
refused), writes status.json and events.jsonl, and turns every ending into a state:
completed, stopped (graceful), or failed with a one-line message and the log path.
It ignores SIGHUP, so a dropped SSH session never kills it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import sys
import time
import traceback
import warnings
from pathlib import Path

from ftwizard.config import load_config
from ftwizard.errors import UserError
from ftwizard.rundir import EventWriter, RunDir


def _quiet_libraries() -> None:
    """Keep library chatter (bitsandbytes' kernels warning, HF advice) out of the way; it still reaches train.log."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.checkpoint")


def acquire_lock(run: RunDir):
    run.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(run.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = run.read_status().get("pid")
        raise UserError(f"another trainer (pid {holder}) is already running in {run.path}",
                        fix=f"follow it with `ftwizard monitor {run.name}`, or stop it with `ftwizard stop {run.name}`")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftwizard.training.worker")
    ap.add_argument("run_dir")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    run = RunDir(args.run_dir)
    try:
        lock_fd = acquire_lock(run)
    except UserError as e:
        print(e.render(), file=sys.stderr)
        return 3  # leave status.json to the trainer that owns it

    import psutil

    me = psutil.Process()
    stop_flag: dict = {"requested": False}

    def on_signal(signum, _frame):
        stop_flag.update(requested=True, reason=signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run.stop_file.unlink(missing_ok=True)  # an old request must not stop the new process
    run.write_status(state="starting", pid=os.getpid(), pid_started=me.create_time(), host=socket.gethostname(),
                     started_at=time.time(), ended_at=None, message=None, log=str(run.log), resumed=args.resume)
    writer = EventWriter(run.events)
    writer.write("system", event="process_start", pid=os.getpid(), resume=args.resume)
    _quiet_libraries()
    try:
        cfg = load_config(run.config)
        resume_from = None
        if args.resume:
            resume_from = run.last_checkpoint()
            if resume_from is None:
                raise UserError("no checkpoint to resume from", where=str(run.checkpoints),
                                fix="start a new run with `ftwizard train CONFIG`")
        from ftwizard.training.trainer import NonFiniteLoss, train

        try:
            state = train(run, cfg, writer, stop_flag, resume_from, log=lambda m: print(m, flush=True))
        except NonFiniteLoss as e:
            writer.write("system", event="failed", step=e.step, message=str(e))
            run.write_status(state="failed", message=str(e), ended_at=time.time(), step=e.step)
            return 1
        writer.write("system", event=state)
        run.write_status(state=state, ended_at=time.time(),
                         message="stopped on request; `ftwizard resume` continues" if state == "stopped" else None)
        return 0
    except UserError as e:
        msg = e.what + (f" ({e.where})" if e.where else "") + (f"; {e.fix}" if e.fix else "")
        print(e.render(), file=sys.stderr, flush=True)
        writer.write("system", event="failed", message=msg)
        run.write_status(state="failed", message=msg, ended_at=time.time())
        return 1
    except BaseException as e:  # noqa: BLE001 - any crash must end as a state, with the details in the log
        traceback.print_exc()
        sys.stderr.flush()
        msg = _one_line(e)
        writer.write("system", event="failed", message=msg)
        run.write_status(state="failed", message=f"{msg} (details in {run.log})", ended_at=time.time())
        return 1
    finally:
        writer.close()
        os.close(lock_fd)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    head = text[0] if text else ""
    if type(e).__name__ == "OutOfMemoryError" or "out of memory" in head.lower():
        return ("out of GPU memory: " + head[:200] + "; try QLoRA, a smaller batch with more accumulation, "
                "gradient checkpointing or a shorter max_length (`ftwizard estimate` shows what fits)")
    return f"{type(e).__name__}: {head[:300]}"


if __name__ == "__main__":
    sys.exit(main())
