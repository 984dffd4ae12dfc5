"""The eval process: `python -m ftwizard.evaluation.worker EVAL_DIR`.

Reads `spec.json` (written by `ftwizard.evaluation.launch.start_eval`), holds a lock so
that two evaluations never write one folder, keeps `status.json` current and turns
every ending into a state (completed, or failed with a one-line message).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from ftwizard.errors import UserError
from ftwizard.fileio import atomic_write_text
from ftwizard.rundir import EventWriter


class Status:
    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {}

    def set(self, **fields) -> None:
        self.data.update(fields)
        self.data["updated_at"] = time.time()
        atomic_write_text(self.path, json.dumps(self.data, indent=1))


def _refresh_run_summary(eval_dir: Path) -> None:
    """runs/NAME/summary.md gains the results (it was written when training ended, before any eval)."""
    run = eval_dir.parent
    if eval_dir.name == "eval" and (run / "status.json").is_file():
        from ftwizard.rundir import RunDir
        from ftwizard.summary import write_summary_quietly

        write_summary_quietly(RunDir(run))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftwizard.evaluation.worker")
    ap.add_argument("eval_dir")
    args = ap.parse_args(argv)
    eval_dir = Path(args.eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(eval_dir / ".eval.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another evaluation is running in {eval_dir}", file=sys.stderr)
        return 3

    import psutil

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    status = Status(eval_dir / "status.json")
    status.set(state="running", pid=os.getpid(), pid_started=psutil.Process().create_time(),
               started_at=time.time(), ended_at=None, message=None, log=str(eval_dir / "eval.log"))
    writer = EventWriter(eval_dir / "events.jsonl")
    writer.write("eval", event="start", pid=os.getpid())
    try:
        spec = json.loads((eval_dir / "spec.json").read_text())
        from ftwizard.evaluation.runner import run_eval

        summary = run_eval(eval_dir, spec, writer, log=lambda m: print(m, flush=True), set_status=status.set)
        writer.write("eval", event="finished", best_checkpoint=summary.get("best_checkpoint"))
        status.set(state="completed", ended_at=time.time(), current=None, models_done=len(spec["models"]))
        _refresh_run_summary(eval_dir)
        return 0
    except UserError as e:
        msg = e.what + (f" ({e.where})" if e.where else "") + (f"; {e.fix}" if e.fix else "")
        print(e.render(), file=sys.stderr, flush=True)
        writer.write("eval", event="failed", message=msg)
        status.set(state="failed", message=msg, ended_at=time.time())
        return 1
    except BaseException as e:  # noqa: BLE001 - any crash ends as a state; details go to the log
        traceback.print_exc()
        head = (str(e).strip().splitlines() or [""])[0][:300]
        msg = f"{type(e).__name__}: {head}"
        writer.write("eval", event="failed", message=msg)
        status.set(state="failed", message=f"{msg} (details in {eval_dir / 'eval.log'})", ended_at=time.time())
        return 1
    finally:
        writer.close()
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
