"""Text-mode following of a run (`ftwizard train` in the foreground, `monitor --plain`)
and the `runs` table. Reads only the run folder, like every other viewer."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftwizard.rundir import ACTIVE_STATES, FINAL_STATES, EventReader, RunDir, RunSummary

POLL_S = 0.25

# ---- divergence ------------------------------------------------------------------------------
# A fine-tune's training loss falls, or at worst plateaus. Two signs that it is being driven
# apart (a learning rate far too high, no warmup, clipping off) rather than learning:
DIVERGE_FACTOR = 1.5    # the recent loss (median of the last 3 logged) at 1.5x the starting loss (the first logged,
                        # or the median of the first 3 when higher: one easy first batch does not set the bar)
RISE_WINDOW = 10        # or, over the last 10 logged losses, the last 5 average...
RISE_FACTOR = 1.3       # ...30 % above the 5 before them (a steady climb, not one noisy batch)
MIN_RISE = 0.25         # and by at least 0.25 nats: 0.05 -> 0.08 on data already learned is noise, not divergence


@dataclass
class Divergence:
    """Why the loss is judged to diverge, and what to change (one sentence each)."""

    step: int
    loss: float
    start_loss: float
    kind: str           # "above_start" | "rising"
    reason: str
    fix: str

    def to_event(self) -> dict[str, Any]:
        return {"event": "divergence", "step": self.step, "loss": round(self.loss, 4),
                "start_loss": round(self.start_loss, 4), "divergence": self.kind, "reason": self.reason,
                "fix": self.fix}


def divergence_fix(learning_rate: float | None = None, warmup_ratio: float | None = None,
                   max_grad_norm: float | None = None, method: str | None = None) -> str:
    """What to change, from the run's own settings (guidance: LoRA 1e-4..2e-4, full ~1e-5..2e-5,
    warmup 3-10 %, max grad norm ~0.3-1.0)."""
    parts = []
    if learning_rate:
        usual = 2e-5 if method == "full" else 2e-4
        new = min(learning_rate / 10, usual) if learning_rate > usual else learning_rate / 10
        parts.append(f"lower training.learning_rate from {learning_rate:g} to {new:g}")
    else:
        parts.append("lower training.learning_rate (by 10x)")
    if warmup_ratio is not None and warmup_ratio < 0.03:
        parts.append("set training.warmup_ratio: 0.05")
    if max_grad_norm is not None and max_grad_norm > 1.0:
        parts.append("set training.max_grad_norm: 1.0")
    return "; ".join(parts) + ", then start a new run (resuming keeps the diverged weights)"


def detect_divergence(points: list[tuple[int, float]], fix: str | None = None) -> Divergence | None:
    """Judge a loss curve, `[(step, loss), ...]` in step order (finite values only; NaN has its own
    stop). None while it looks like training. The trainer's callback calls this after each logged
    loss and writes the first verdict as a `divergence` event; viewers may call it on their own data."""
    pts = [(s, float(v)) for s, v in points if v is not None and math.isfinite(float(v))]
    if len(pts) < 4:
        return None
    fix = fix or divergence_fix()
    start = max(pts[0][1], sorted(v for _, v in pts[:3])[1])
    recent = sorted(v for _, v in pts[-3:])[1]
    step = pts[-1][0]
    if start > 0 and recent >= DIVERGE_FACTOR * start and recent - start >= MIN_RISE:
        return Divergence(step, recent, start, "above_start",
                          f"loss {recent:.3g} at step {step} is {recent / start:.1f}x where it started ({start:.3g})",
                          fix)
    if len(pts) >= RISE_WINDOW:
        half = RISE_WINDOW // 2
        before = sum(v for _, v in pts[-RISE_WINDOW:-half]) / half
        last = sum(v for _, v in pts[-half:]) / half
        if before > 0 and last >= RISE_FACTOR * before and last - before >= MIN_RISE:
            return Divergence(step, last, start, "rising",
                              f"loss keeps rising: the last {half} steps average {last:.3g}, "
                              f"{last / before - 1:.0%} above the {half} before ({before:.3g})", fix)
    return None


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_age(ts: float | None) -> str:
    if not ts:
        return "-"
    d = time.time() - ts
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= n:
            return f"{int(d // n)}{unit} ago"
    return f"{int(d)}s ago"


def describe_event(e: dict[str, Any], max_steps: int | None = None) -> str | None:
    """One human line for an event (None for events not worth a line)."""
    kind = e.get("kind")
    if kind == "train":
        total = f"/{max_steps}" if max_steps else ""
        # a non-finite loss is written as null: it must print as nan, not crash the follower
        loss = e.get("loss") if e.get("loss") is not None else float("nan")
        parts = [f"step {e.get('step')}{total}", f"epoch {e.get('epoch') or 0:.2f}", f"loss {loss:.4f}"]
        if e.get("learning_rate") is not None:
            parts.append(f"lr {e['learning_rate']:.2e}")
        if e.get("grad_norm") is not None:
            parts.append(f"grad {e['grad_norm']:.3f}")
        if e.get("tokens_per_second"):
            parts.append(f"{e['tokens_per_second']:,.0f} tok/s")
        if e.get("memory_gb") is not None:
            parts.append(f"mem {e['memory_gb']:.2f} GB")
        if e.get("eta_s") is not None:
            parts.append(f"eta {fmt_duration(e['eta_s'])}")
        return "  ".join(parts)
    if kind == "eval":
        return f"eval  step {e.get('step')}  eval_loss {e.get('eval_loss', float('nan')):.4f}"
    ev = e.get("event")
    messages = {
        "loading_model": lambda: f"loading {e.get('base')} ({e.get('method')}, {e.get('device')}, {e.get('precision')})",
        "data": lambda: f"data: {e.get('train_rows')} training rows ({e.get('train_tokens'):,} tokens), "
                        f"{e.get('eval_rows')} held-out; {e.get('trainable_params'):,} of {e.get('total_params'):,} parameters trained",
        "resumed": lambda: f"resuming from {Path(str(e.get('from_checkpoint'))).name} (step {e.get('step')})",
        "checkpoint": lambda: f"checkpoint saved at step {e.get('step')}",
        "stopping": lambda: f"stopping at step {e.get('step')} ({e.get('reason')}): saving a checkpoint",
        "nan": lambda: f"loss is not finite at step {e.get('step')}: stopping",
        "divergence": lambda: f"WARNING: the loss is diverging: {e.get('reason')}. To fix: {e.get('fix')}"
                              + (" (stopping: training.stop_on_divergence)" if e.get("stopping") else ""),
        "saved": lambda: f"saved {e.get('path')}",
        "failed": lambda: f"FAILED: {e.get('message')}",
    }
    fn = messages.get(ev)
    return fn() if fn else None


class _Printer:
    """Where follow_run's output goes: plain lines, or a Rich progress bar on a terminal."""

    def __init__(self, out, bar: bool):
        self.out = out
        self.progress = None
        self.task = None
        if bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     console=Console(file=out), transient=False)
            self.progress.start()

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            self.out.write(text + "\n")

    def event(self, e: dict[str, Any], max_steps: int | None, json_lines: bool) -> None:
        import orjson

        if json_lines:
            self.out.write(orjson.dumps(e).decode() + "\n")
            return
        if self.progress is not None and e.get("kind") == "train":
            info = f"loss {e.get('loss', float('nan')):.4f}"
            if e.get("tokens_per_second"):
                info += f"  {e['tokens_per_second']:,.0f} tok/s"
            if self.task is None:
                self.task = self.progress.add_task("training", total=max_steps, info=info)
            self.progress.update(self.task, completed=e.get("step", 0), total=max_steps, info=info)
            return
        text = describe_event(e, max_steps)
        if text:
            self.line(text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.out.flush()


def follow_run(run: RunDir, proc=None, json_lines: bool = False, follow: bool = True,
               stop_on_interrupt: bool = True, out=None, bar: bool | None = None) -> int:
    """Print a run's events until it reaches a final state; the exit code reflects it.

    On a terminal the training steps drive a progress bar (other events print above it);
    elsewhere every event is a plain line, which is what logs and scripts want.
    """
    out = out or sys.stdout
    if bar is None:
        bar = follow and not json_lines and out.isatty()
    printer = _Printer(out, bar)
    reader = EventReader(run.events)
    max_steps = None
    interrupted = False
    from ftwizard.notify import ViewerNotifier  # bell + OSC 9/777 when the run ends while watched (h15)

    notifier = ViewerNotifier(run.name) if follow and not json_lines and out.isatty() else None

    def drain() -> None:
        nonlocal max_steps
        for e in reader.read_new():
            if e.get("max_steps"):
                max_steps = e["max_steps"]
            printer.event(e, max_steps, json_lines)
            seq = notifier.feed(e) if notifier else None
            if seq:
                out.write(seq)

    try:
        while True:
            try:
                drain()
                out.flush()
                st = run.status()
                if proc is not None and proc.poll() is not None and st.get("state") not in FINAL_STATES:
                    time.sleep(0.2)  # the status write races the exit; look once more
                    st = run.status()
                if notifier is not None:  # h15
                    drain()
                    seq = notifier.status(st)
                    if seq:
                        out.write(seq)
                        out.flush()
                if st.get("state") in FINAL_STATES or not follow:
                    if follow:
                        drain()
                    if proc is not None and follow:
                        _wait_for_exit(proc)
                    printer.close()
                    return _final(run, st, json_lines, out, follow)
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                if not stop_on_interrupt or interrupted:
                    printer.close()
                    print(f"\nleft run {run.name} running; follow it with `ftwizard monitor {run.path}`", file=sys.stderr)
                    return 130
                interrupted = True
                from ftwizard.training.launch import request_stop

                try:
                    request_stop(run)
                except Exception:
                    pass
                printer.line("stopping gracefully (saving a checkpoint); Ctrl-C again leaves it running")
    finally:
        printer.close()


def _wait_for_exit(proc, timeout: float = 120.0) -> None:
    """A foreground run returns only when its trainer has exited: the final state is written before the
    process's own exit work (experiment trackers flush and close their runs at exit), and a caller that
    reads a tracker's files right after `ftwizard train` must find them complete (seen: an MLflow run still
    RUNNING and an empty wandb history under load)."""
    try:
        proc.wait(timeout=timeout)
    except Exception:  # noqa: BLE001 - a trainer stuck in its exit work must not hang the command
        pass


def _final(run: RunDir, st: dict[str, Any], json_lines: bool, out, follow: bool) -> int:
    state = st.get("state")
    if not json_lines and follow:
        msg = f"run {run.name}: {state}"
        if st.get("message"):
            msg += f": {st['message']}"
        if state == "completed" and st.get("output"):
            msg += f"\n  result: {st['output']}"
        div = st.get("divergence") if isinstance(st.get("divergence"), dict) else None
        if div and "diverged" not in (st.get("message") or ""):
            msg += f"\n  WARNING: the loss diverged ({div.get('reason')}); to fix: {div.get('fix')}"
        if state == "stopped" and not div:
            msg += f"\n  continue with: ftwizard resume {run.path}"
        out.write(msg + "\n")
        out.flush()
    if json_lines and follow and state in ("failed", "died", "corrupt"):
        # the --json failure contract: the last line is one {"error", "where", "fix"} object
        import orjson

        fix = (f"read the log, fix the cause, then `ftwizard resume {run.name}` (from its last checkpoint) or "
               "start a new run") if state != "corrupt" else "look at the files named in the error"
        out.write(orjson.dumps({"error": f"run {run.name} {state}: {st.get('message') or 'no message'}",
                                "where": str(run.log), "fix": fix}).decode() + "\n")
        out.flush()
    return 0 if state in ("completed", "stopped", "running", "starting", "stopping") else 1


def _short(path: Path) -> str:
    home = str(Path.home())
    p = str(Path(path).resolve())
    return "~" + p[len(home):] if p.startswith(home + "/") else p


def print_runs_table(runs: list[RunSummary], runs_dir: Path | None) -> None:
    """The `ftwizard runs` table; runs_dir None: runs from every folder (the run index), with their folder."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not runs:
        where = f"in {Path(runs_dir).resolve()}" if runs_dir is not None else "yet"
        console.print(f"no runs {where}; start one with `ftwizard train CONFIG`")
        return
    colours = {"running": "green", "completed": "cyan", "stopped": "yellow", "failed": "red", "died": "red",
               "corrupt": "red"}
    title = f"runs in {Path(runs_dir).resolve()}" if runs_dir is not None else "runs (every folder)"
    t = Table(title=title, title_justify="left")
    cols = ("run", "state", "step", "loss", "eval loss", "started") + (("folder",) if runs_dir is None else ())
    for col in cols:
        t.add_column(col, justify="right" if col in ("step", "loss", "eval loss") else "left",
                     overflow="fold")  # wrap, never cut: run names, numbers and paths stay whole
    for r in runs:
        step = f"{r.step}/{r.max_steps}" if r.max_steps else str(r.step or 0)
        state = f"[{colours.get(r.state, 'white')}]{r.state}[/]"
        if r.extra.get("divergence"):
            state += " [bold red]diverging[/]" if r.state in ACTIVE_STATES else " [red](diverged)[/]"
        t.add_row(r.name, state, step,
                  f"{r.loss:.4f}" if r.loss is not None else "-",
                  f"{r.eval_loss:.4f}" if r.eval_loss is not None else "-", fmt_age(r.started_at),
                  *((_short(Path(r.path).parent),) if runs_dir is None else ()))
    console.print(t)
    for r in runs:  # a damaged run says what is wrong; the others list as usual
        if r.state == "corrupt":
            from rich.markup import escape

            console.print(f"[red]{escape(r.name)}[/]: {escape(r.message or 'unreadable')}", highlight=False)
