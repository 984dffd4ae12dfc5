"""A synthetic run folder for monitor tests: a real process writes events the way the
trainer does (same RunDir/EventWriter contract), without loading a model.

Used by the Pilot and tmux tests for the monitor's mechanics (tailing, re-attach,
stop via the STOP file, a dead pid); the real trainer is exercised in the slow test.
Run as a script: python tests/tui_fakerun.py RUN_DIR STEPS INTERVAL_S
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ftwizard.rundir import EventWriter, RunDir  # noqa: E402


def write_history(run: RunDir, steps: int, *, eval_every: int = 10, state: str = "completed",
                  overfit: bool = False, pid: int | None = None) -> None:
    """A finished (or given-state) run with `steps` train events, written at once."""
    run.path.mkdir(parents=True, exist_ok=True)
    w = EventWriter(run.events)
    w.write("system", event="train_begin", step=0, max_steps=steps)
    for s in range(1, steps + 1):
        w.write("train", **train_fields(s, steps))
        if eval_every and s % eval_every == 0:
            ev = 2.0 * math.exp(-s / (steps / 3)) + 0.6
            if overfit and s > steps // 2:
                ev = 0.6 + 0.01 * (s - steps // 2)
            w.write("eval", step=s, epoch=s / 10, eval_loss=ev)
    w.close()
    run.log.write_text("loading model\n" + "".join(f"step {s}\n" for s in range(1, steps + 1)))
    run.write_status(state=state, pid=pid, started_at=time.time() - 60, step=steps, max_steps=steps)


def write_preference_history(run: RunDir, steps: int, *, eval_every: int = 10, kto: bool = False,
                             state: str = "completed") -> None:
    """A finished DPO (or KTO) run: the loss falls from ln 2 while the margin and the preference accuracy rise,
    as TRL logs them (train events carry rewards_*; eval events the same with an eval_ prefix)."""
    run.path.mkdir(parents=True, exist_ok=True)
    w = EventWriter(run.events)
    w.write("system", event="train_begin", step=0, max_steps=steps)
    for s in range(1, steps + 1):
        fields = dict(train_fields(s, steps), loss=round(0.6931 * (1 - 0.8 * s / steps) + 0.01 * math.sin(s), 4),
                      learning_rate=5e-6 * (1 - s / steps))  # DPO: from ln 2 down, at a DPO learning rate
        w.write("train", **fields, **reward_fields(s, steps, kto=kto))
        if eval_every and s % eval_every == 0:
            ev = {"eval_" + k: v * 0.8 for k, v in reward_fields(s, steps, kto=kto).items()}
            w.write("eval", step=s, epoch=s / 10, eval_loss=0.69 * math.exp(-s / steps) + 0.1, **ev)
    w.close()
    run.log.write_text("loading model\n" + "".join(f"step {s}\n" for s in range(1, steps + 1)))
    run.write_status(state=state, pid=None, started_at=time.time() - 60, step=steps, max_steps=steps)


def reward_fields(s: int, steps: int, kto: bool = False) -> dict:
    f = s / steps
    out = dict(rewards_chosen=round(0.8 * f, 4), rewards_rejected=round(-1.2 * f, 4), rewards_margins=round(2.0 * f, 4),
               rewards_accuracies=round(min(1.0, 0.5 + 0.45 * f + 0.05 * math.sin(s)), 4))
    if kto:
        out["kl"] = round(0.05 + 0.1 * f, 4)
    return out


def train_fields(s: int, steps: int) -> dict:
    return dict(step=s, epoch=round(s / 10, 4), loss=2.5 * math.exp(-s / (steps / 3)) + 0.5,
                learning_rate=2e-4 * (1 - s / steps), grad_norm=1.0 / (1 + s / 50), tokens_per_second=1500.0,
                memory_gb=1.25, elapsed_s=s * 0.1, eta_s=(steps - s) * 0.1)


def live(path: Path, steps: int, interval: float) -> int:
    """Act like a detached trainer: claim the run, log a step each interval, obey STOP/SIGTERM."""
    run = RunDir(path)
    path.mkdir(parents=True, exist_ok=True)
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    import psutil

    run.write_status(state="running", pid=os.getpid(), pid_started=psutil.Process().create_time(),
                     started_at=time.time(), step=0, max_steps=steps)
    w = EventWriter(run.events)
    w.write("system", event="train_begin", step=0, max_steps=steps)
    with open(run.log, "a") as log:
        for s in range(1, steps + 1):
            time.sleep(interval)
            w.write("train", **train_fields(s, steps))
            log.write(f"step {s}/{steps}\n")
            log.flush()
            run.write_status(step=s)
            if stop["requested"] or run.stop_file.exists():
                w.write("system", event="stopping", step=s)
                run.write_status(state="stopped", step=s, ended_at=time.time())
                return 0
    run.write_status(state="completed", step=steps, ended_at=time.time())
    return 0


if __name__ == "__main__":
    raise SystemExit(live(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
