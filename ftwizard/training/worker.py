"""The trainer process: `python -m ftwizard.training.worker RUN_DIR [--resume]`.

It owns the run folder while it lives: holds an exclusive lock (a second trainer is
refused), writes status.json and events.jsonl, and turns every ending into a state:
completed, stopped (graceful), or failed with a one-line message and the log path.
It ignores SIGHUP, so a dropped SSH session never kills it.

With a `launch.json` in the folder it trains through torchrun instead and supervises
the ranks (see distributed.py); each rank is `... worker RUN_DIR --rank`, which takes
no lock and, unless it is global rank 0, writes nothing but its failure file.
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
    import logging

    class _NoKernelsHubAdvice(logging.Filter):
        """bitsandbytes' CPU backend logs that it could not fetch optional kernels from the hub and asks for
        `pip install kernels`: it falls back to its own code, nothing is wrong, and the advice would mislead."""

        def filter(self, record: logging.LogRecord) -> bool:
            return "kernels-community" not in record.getMessage() and "pip install kernels" not in record.getMessage()

    for name in ("bitsandbytes", "bitsandbytes.backends.cpu.ops"):
        logging.getLogger(name).addFilter(_NoKernelsHubAdvice())


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
    ap.add_argument("--rank", action="store_true", help="a rank started by torchrun (internal)")
    args = ap.parse_args(argv)
    if args.rank:
        return rank_main(RunDir(args.run_dir), args.resume)
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
    from ftwizard.notify import NotifyingWriter
    from ftwizard.summary import write_summary_quietly

    writer = NotifyingWriter(EventWriter(run.events), run)  # endings also POST the webhook, if any (h15)
    writer.write("system", event="process_start", pid=os.getpid(), resume=args.resume)
    _quiet_libraries()
    from ftwizard.training.distributed import LaunchSpec

    spec = LaunchSpec.load(run.path)
    if spec is not None:
        try:
            return supervise(run, spec, args.resume, writer, stop_flag)
        finally:
            write_summary_quietly(run)  # runs/NAME/summary.md (h15)
            writer.close()
            os.close(lock_fd)
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
        stopped_msg = stop_flag.get("message") or "stopped on request; `ftwizard resume` continues"
        run.write_status(state=state, ended_at=time.time(), message=stopped_msg if state == "stopped" else None)
        if state == "completed":
            _learn_speed(run)
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
        write_summary_quietly(run)  # runs/NAME/summary.md (h15)
        writer.close()
        os.close(lock_fd)


def _learn_speed(run: RunDir) -> None:
    """A completed run measured this machine better than any probe: the next plan's wall time uses it
    (ftwizard.hardware.walltime.learn_from_run). Never fails the run."""
    try:
        from ftwizard.hardware.walltime import learn_from_run

        learn_from_run(run.path)
    except Exception as e:  # noqa: BLE001 - a speed note must never turn a completed run into a failure
        print(f"note: could not learn this machine's speed from the run ({e})", flush=True)


def supervise(run: RunDir, spec, resume: bool, writer: EventWriter, stop_flag: dict) -> int:
    """Run this node's ranks through torchrun and turn how they ended into the run's state."""
    import shutil

    from ftwizard.training import distributed as dist

    shutil.rmtree(run.path / dist.RANKS_DIR, ignore_errors=True)  # failures of an earlier attempt are not this one's
    run.write_status(world_size=spec.world_size, nodes=spec.nodes, node_rank=spec.node_rank, strategy=spec.strategy)
    writer.write("system", event="launch", world_size=spec.world_size, nodes=spec.nodes, node_rank=spec.node_rank,
                 gpus_per_node=spec.gpus, strategy=spec.strategy)
    if spec.node_rank > 0:  # no rank 0 here to report progress: this folder's state is this node's
        run.write_status(state="running")
    try:
        rc, tail = dist.run_ranks(spec, run.path, resume, lambda: stop_flag.get("requested"))
    except OSError as e:
        msg = f"could not start torchrun: {e}"
        writer.write("system", event="failed", message=msg)
        run.write_status(state="failed", message=msg, ended_at=time.time())
        return 1
    result = dist.read_rank_files(run.path).get(0, {})
    if rc == 0 and spec.node_rank > 0:
        run.write_status(state="completed", ended_at=time.time(),
                         message=f"node {spec.node_rank} of {spec.nodes} finished; node 0's run folder has the result")
        writer.write("system", event="completed")
        return 0
    if rc == 0 and result.get("state") in ("completed", "stopped"):
        state = result["state"]
        writer.write("system", event=state)
        run.write_status(state=state, ended_at=time.time(), step=result.get("step"), output=result.get("output"),
                         message="stopped on request; `ftwizard resume` continues" if state == "stopped" else None)
        return 0
    if rc == 0:
        rank, msg = 0, "the ranks exited without a result (see the log)"
    else:
        rank, msg = dist.failure_message(spec, run.path, rc, tail)
    writer.write("system", event="failed", message=msg, rank=rank)
    run.write_status(state="failed", message=f"{msg} (details in {run.log})", failed_rank=rank, ended_at=time.time(),
                     step=result.get("step") or run.read_status().get("step"))
    return 1


class _QuietRun(RunDir):
    """The run folder as a rank other than 0 sees it: readable (STOP, checkpoints), never written."""

    def write_status(self, **fields):
        return {}


class _NullWriter:
    def write(self, kind: str, **fields):
        return {}

    def close(self) -> None:
        pass


def rank_main(run: RunDir, resume: bool) -> int:
    """One rank under torchrun: train; global rank 0 reports, every rank records its own failure."""
    from ftwizard.training import distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    main_rank = rank == 0
    # SIGTERM stays fatal (torchrun tears ranks down with it); stop requests arrive as the STOP file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _quiet_libraries()
    view = run if main_rank else _QuietRun(run.path)
    from ftwizard.notify import NotifyingWriter

    # rank 0 writes the divergence event: its webhook goes from here (endings go from the supervisor) (h15)
    writer = NotifyingWriter(EventWriter(run.events), run) if main_rank else _NullWriter()
    stop_flag: dict = {"requested": False}
    try:
        cfg = load_config(run.config)
        resume_from = None
        if resume:
            resume_from = run.last_checkpoint()
            if resume_from is None:
                raise UserError("no checkpoint to resume from on this node", where=str(run.checkpoints),
                                fix="resuming a run across machines needs the run folder on a shared disk")
        from ftwizard.training.trainer import train

        state = train(view, cfg, writer, stop_flag, resume_from, log=lambda m: print(m, flush=True),
                      strategy=os.environ.get("FTWIZARD_STRATEGY", "ddp"))
        if main_rank:
            st = run.read_status()
            dist.write_rank_file(run.path, rank, state=state, step=st.get("step"), output=st.get("output"))
        return 0
    except BaseException as e:  # noqa: BLE001 - the supervisor reads this file to name the failing rank
        if isinstance(e, UserError):
            msg = e.what + (f" ({e.where})" if e.where else "") + (f"; {e.fix}" if e.fix else "")
            print(e.render(), file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
            msg = _one_line(e)
        step = getattr(e, "step", None)
        try:
            dist.write_rank_file(run.path, rank, state="failed", message=msg, step=step)
        except OSError:
            pass
        return 1
    finally:
        writer.close()


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    head = text[0] if text else ""
    if type(e).__name__ == "OutOfMemoryError" or "out of memory" in head.lower():
        return ("out of GPU memory: " + head[:200] + "; try QLoRA, a smaller batch with more accumulation, "
                "gradient checkpointing or a shorter max_length (`ftwizard estimate` shows what fits)")
    if not head:  # an exception with no text: its kind is all there is to say
        return type(e).__name__
    return head[:300]  # no exception class names in what a person reads (the traceback is in train.log)


if __name__ == "__main__":
    sys.exit(main())
