"""The live view of one run: loss plot, metrics, progress, warnings, log tail.

It reads the run folder only (events.jsonl, status.json, train.log), so it works on
any run in any state, from any terminal, as many at once as you like. A thread worker
tails the folder into a `RunWatch` (bounded buffers) and raises a dirty flag; a 0.5 s
timer redraws only when the flag is up, so the screen never redraws more than twice a
second however fast events arrive. Stop and resume go through the engine's launcher,
which is light (no torch): the trainer always runs in its own process.
"""

from __future__ import annotations

import threading
import time

import psutil
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from ftwizard.rundir import RunDir
from ftwizard.tui.runwatch import RunWatch, format_duration, format_number
from ftwizard.tui.widgets.loss_plot import REWARD_SERIES, LossPlot, RewardPlot
from ftwizard.tui.workers import ReportsWorkerErrors

STATE_STYLES = {
    "starting": "yellow", "running": "bold green", "stopping": "yellow", "stopped": "cyan",
    "completed": "bold cyan", "failed": "bold red", "died": "bold red", "unknown": "dim",
}
REDRAW_EVERY_S = 0.5
POLL_EVERY_S = 0.25


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 10, lo: float | None = None, hi: float | None = None) -> str:
    """The last `width` values as block characters, scaled to [lo, hi] (their own range when not given)."""
    vals = values[-width:]
    if not vals:
        return ""
    lo = min(vals) if lo is None else lo
    hi = max(vals) if hi is None else hi
    span = hi - lo
    if span <= 0:
        return SPARKS[len(SPARKS) // 2] * len(vals)
    return "".join(SPARKS[max(0, min(len(SPARKS) - 1, int((v - lo) / span * (len(SPARKS) - 1) + 0.5)))]
                   for v in vals)


def reward_number(v: float | None) -> str:
    """A reward or margin in few characters (they sit near 0, often below 0.1): 0.026, -0.006, 12.5."""
    if v is None:
        return "-"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.3g}"


def progress_bar(fraction: float | None, width: int) -> Text:
    if fraction is None:
        return Text("·" * width, style="dim")
    done = int(round(fraction * width))
    return Text("█" * done, style="green") + Text("░" * (width - done), style="dim")


class RunMonitor(ReportsWorkerErrors, Vertical, can_focus=True):
    """Follows one run folder. Keys: s stop, r resume, l log, p rewards plot (preference runs)."""

    DEFAULT_CSS = """
    RunMonitor { height: 1fr; }
    RunMonitor #mon-head { height: 2; padding: 0 1; }
    RunMonitor #mon-body { height: 1fr; min-height: 8; }
    RunMonitor #mon-metrics { width: 30; padding: 0 1; border: round $primary 50%; }
    RunMonitor #mon-warnings { height: auto; max-height: 4; padding: 0 1; color: $warning; }
    RunMonitor #mon-log { height: 6; padding: 0 1; border: round $primary 30%; color: $text-muted;
                          text-wrap: nowrap; text-overflow: ellipsis; }
    RunMonitor.-no-log #mon-log { display: none; }
    RunMonitor #mon-rewards { display: none; }
    RunMonitor.-rewards #mon-rewards { display: block; }
    RunMonitor.-rewards #mon-plot { display: none; }
    """

    BINDINGS = [
        Binding("s", "stop_run", "Stop"),
        Binding("r", "resume_run", "Resume"),
        Binding("l", "toggle_log", "Log"),
        Binding("p", "toggle_plot", "Rewards"),
    ]

    class StateChanged(Message):
        """The run's state changed (e.g. running -> completed)."""

        def __init__(self, monitor: "RunMonitor", state: str):
            super().__init__()
            self.monitor = monitor
            self.state = state

    def __init__(self, run: RunDir, *, id: str | None = None):
        super().__init__(id=id)
        self.run = run
        self.watch = RunWatch(run)
        from ftwizard.notify import ViewerNotifier

        self._notifier = ViewerNotifier(run.name)  # h15: terminal notification when the run ends while watched
        self._lock = threading.Lock()
        self._dirty = True
        self._last_state: str | None = None
        self._preference = False  # the run logs rewards (DPO, ORPO, KTO): offers the rewards plot (p)
        self.redraws = 0
        self.last_redraw_ms = 0.0
        self.proc = None  # the Popen when this app started or resumed the trainer (reaped here)
        self.sample_gpus = True
        self._sampler = None
        self.gpu_sample = None

    def compose(self) -> ComposeResult:
        yield Static(id="mon-head")
        with Horizontal(id="mon-body"):
            yield LossPlot(id="mon-plot")
            yield RewardPlot(id="mon-rewards")
            yield Static(id="mon-metrics")
        yield Static(id="mon-warnings")
        yield Static(id="mon-log")

    def on_mount(self) -> None:
        self.query_one("#mon-log").border_title = "train.log"
        self.query_one("#mon-metrics").border_title = "now"
        self._tail()
        self.set_interval(REDRAW_EVERY_S, self.redraw_if_dirty)

    # ---- reading (thread) ------------------------------------------------------
    @staticmethod
    def ram_total_gb() -> float:
        return psutil.virtual_memory().total / 2**30

    def _sample_gpus(self) -> None:
        """Live GPU memory and utilisation (NVML) while the run is active; nothing without a GPU."""
        if self._sampler is None:
            from ftwizard.hardware.gpus import Sampler

            self._sampler = Sampler()
        if self._sampler.has_gpu:
            self.gpu_sample = self._sampler.sample()
            self._dirty = True

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def _tail(self) -> None:
        worker = get_current_worker()
        last_sample = 0.0
        try:
            self._tail_loop(worker, last_sample)
        finally:
            if self._sampler is not None:
                self._sampler.close()

    def _tail_loop(self, worker, last_sample: float) -> None:
        while not worker.is_cancelled:
            if self.watch.active and time.monotonic() - last_sample > 2.0 and self.sample_gpus:
                last_sample = time.monotonic()
                try:
                    self._sample_gpus()
                except Exception:  # NVML trouble is never worth the monitor
                    self.sample_gpus = False
            with self._lock:  # one chunk per hold, so a redraw never waits behind a long catch-up
                changed = self.watch.poll(max_chunks=1)
                caught_up = self.watch.caught_up()
            if changed:
                self._dirty = True
                notice = self._notifier.scan(self.watch.system, {"loss": self.watch.latest.get("loss"),  # h15
                                                                 "eval_loss": self.watch.latest_eval.get("eval_loss")},
                                             self.watch.status)
                if notice:
                    self.app.call_from_thread(self._notify_terminal, notice)
            if self.proc is not None and self.proc.poll() is not None:
                self.proc = None  # reaped: no zombie left behind while the app stays open
            time.sleep(POLL_EVERY_S if caught_up else 0.002)  # the gap lets a redraw take the lock

    def _notify_terminal(self, seq: str) -> None:
        """Bell + OSC 9/777 (ftwizard.notify) straight to the terminal: the run ended while watched (h15)."""
        driver = getattr(self.app, "_driver", None)
        if driver is not None and not self.app.is_headless:
            driver.write(seq)

    # ---- drawing (main thread) -------------------------------------------------
    def redraw_if_dirty(self) -> bool:
        if not self._dirty:
            return False
        self._dirty = False
        self.redraw()
        return True

    def redraw(self) -> None:
        t0 = time.perf_counter()
        plot = self.query_one(LossPlot)
        if not self._lock.acquire(timeout=0.02):  # the reader holds it: draw on the next tick, never block keys
            self._dirty = True
            return
        try:
            w = self.watch
            train = w.train.points(plot.max_points)
            evals = w.evals.points(plot.max_points)
            preference = w.preference
            rewards = ({key: w.rewards[key].points(plot.max_points) for key, *_r in REWARD_SERIES
                        if key in w.rewards} if preference and self.has_class("-rewards") else None)
            state = w.state
            head = self._head(w)
            metrics = self._metrics(w)
            warnings = w.warnings()
            log_lines = list(w.log_tail)
        finally:
            self._lock.release()
        plot.set_series(train, evals)
        if rewards is not None:
            reward_plot = self.query_one(RewardPlot)
            reward_plot.set_series(rewards)
            reward_plot.border_subtitle = self._eval_rewards_line()
        if preference != self._preference:
            self._preference = preference
            self.refresh_bindings()
        self.query_one("#mon-head", Static).update(head)
        self.query_one("#mon-metrics", Static).update(metrics)
        warn = self.query_one("#mon-warnings", Static)
        warn.update(Text("\n").join(Text("! " + x.message) for x in warnings))
        warn.display = bool(warnings)
        log = self.query_one("#mon-log", Static)
        height = max(1, log.content_size.height or 4)
        log.update(Text("\n".join(line[-200:] for line in log_lines[-height:]), no_wrap=True,
                        overflow="ellipsis"))
        self.redraws += 1
        self.last_redraw_ms = (time.perf_counter() - t0) * 1000
        if state != self._last_state:
            self._last_state = state
            self.refresh_bindings()
            self.post_message(self.StateChanged(self, state))

    def _head(self, w: RunWatch) -> Text:
        """Two lines that never wrap: optional parts are dropped and the run name shortened before any number."""
        width = self.query_one("#mon-head").content_size.width or (self.content_size.width or 80) - 2
        state = w.state
        facts = Text.assemble("  ", (state, STATE_STYLES.get(state, "")))
        if w.step is not None:
            facts.append(f"  step {w.step}" + (f"/{w.max_steps}" if w.max_steps else ""))
        optional = []
        epoch = w.latest.get("epoch")
        if isinstance(epoch, (int, float)):
            optional.append(Text(f"  epoch {epoch:.2f}"))
        if w.active:
            optional.append(Text("  (runs on if you quit)", style="dim"))
        name = w.run.name
        room = width - facts.cell_len
        if len(name) > room:
            name = name[: max(4, room - 1)] + "…"
        line1 = Text(name, style="bold") + facts
        for part in optional:
            if line1.cell_len + part.cell_len <= width:
                line1.append_text(part)
        if w.progress is not None:
            tail = Text(f" {w.progress * 100:3.0f}%")
        else:
            tail = Text("    ")
        if w.active:
            tail.append(f"  ETA {format_duration(w.eta_s)}")
        else:
            elapsed = w.latest.get("elapsed_s")
            tail.append(f"  took {format_duration(elapsed if isinstance(elapsed, (int, float)) else None)}")
        line2 = progress_bar(w.progress, max(4, min(width - tail.cell_len, 60)))
        line2.append_text(tail)
        line1.no_wrap = line2.no_wrap = True
        return Text("\n").join([line1, line2])

    def _eval_rewards_line(self) -> str:
        """The latest eval margin and accuracy, under the rewards plot (held-out pairs)."""
        w = self.watch
        margin, acc = w.latest_reward("rewards_margins", evals=True), w.latest_reward("rewards_accuracies", evals=True)
        parts = []
        if margin is not None:
            parts.append(f"margin {reward_number(margin)}")
        if acc is not None:
            parts.append(f"accuracy {acc * 100:.0f}%")
        return ("eval: " + ", ".join(parts)) if parts else ""

    def _reward_rows(self, t: Table, w: RunWatch) -> None:
        """A preference run's own numbers: the margin and the preference accuracy with their recent trend
        (a sparkline of the last logged steps), the chosen and rejected rewards, and KTO's KL estimate."""
        margins = w.rewards.get("rewards_margins")
        if margins is not None:
            ys = margins.points()[1]
            t.add_row("margin", Text.assemble((sparkline(ys, 8), "cyan"), " ", reward_number(ys[-1])))
        accs = w.rewards.get("rewards_accuracies")
        if accs is not None:
            ys = accs.points()[1]
            t.add_row("accuracy", Text.assemble((sparkline(ys, 8, 0.0, 1.0), "green"), f" {ys[-1] * 100:3.0f}%"))
        chosen, rejected = w.latest_reward("rewards_chosen"), w.latest_reward("rewards_rejected")
        if chosen is not None or rejected is not None:
            t.add_row("chosen/rej", f"{reward_number(chosen)} / {reward_number(rejected)}")
        kl = w.latest_reward("kl")
        if kl is not None:
            t.add_row("kl", reward_number(kl))

    def _metrics(self, w: RunWatch) -> Table:
        t = Table.grid(padding=(0, 1))
        t.add_column(style="dim")
        t.add_column(justify="right")
        latest = w.latest
        t.add_row("loss", format_number(latest.get("loss")))
        t.add_row("eval loss", format_number(w.latest_eval.get("eval_loss")))
        preference = w.preference
        if preference:
            self._reward_rows(t, w)
        t.add_row("lr", format_number(latest.get("learning_rate"), "lr"))
        t.add_row("grad norm", format_number(latest.get("grad_norm")))
        t.add_row("tokens/s", format_number(w.tokens_per_second, "int"))
        mem = latest.get("memory_gb")
        t.add_row("memory", f"{format_number(mem)} GB" if mem is not None else "-")
        sample = self.gpu_sample if w.active else None
        if sample is not None and sample.gpus:
            for g in sample.gpus[:2]:
                used, total = g["memory_used"] / 2**30, g["memory_total"] / 2**30
                t.add_row(f"gpu{g['index']} mem", progress_bar(used / total, 10) + Text(f" {used:.0f}/{total:.0f}"))
                if g.get("utilization") is not None:
                    t.add_row(f"gpu{g['index']} util", f"{g['utilization']} %")
        elif isinstance(mem, (int, float)) and mem > 0 and not preference:  # 80x24: the rewards need the rows
            total = self.ram_total_gb()
            t.add_row("", progress_bar(min(1.0, mem / total), 10) + Text(f" of {total:.0f}", style="dim"))
        if not preference:
            t.add_row("events", format_number(w.events_read, "int"))
        return t

    # ---- actions -----------------------------------------------------------------
    RESUMABLE = ("stopped", "failed", "died")

    def check_action(self, action: str, parameters) -> bool | None:
        """Offer s only while the run is active and r only when there is something to resume."""
        if action == "stop_run":
            return self.watch.active
        if action == "resume_run":
            return self.watch.state in self.RESUMABLE
        if action == "toggle_plot":
            return self._preference
        return True

    def action_toggle_log(self) -> None:
        self.toggle_class("-no-log")
        self._dirty = True

    def action_toggle_plot(self) -> None:
        """Loss plot <-> the rewards plot (chosen, rejected, margin) of a preference run."""
        self.toggle_class("-rewards")
        self._dirty = True

    def action_stop_run(self) -> None:
        self._stop()

    def action_resume_run(self) -> None:
        self._resume()

    @work(thread=True, exclusive=True, group="control", exit_on_error=False)
    def _stop(self) -> None:
        from ftwizard.errors import UserError
        from ftwizard.training.launch import request_stop

        try:
            request_stop(self.run)
        except UserError as e:
            self.app.call_from_thread(self.notify, e.what, severity="warning")
            return
        self.app.call_from_thread(self.notify, f"Asked {self.run.name} to stop; it saves a checkpoint first.")

    @work(thread=True, exclusive=True, group="control", exit_on_error=False)
    def _resume(self) -> None:
        from ftwizard.errors import UserError
        from ftwizard.training.launch import resume_run

        self.app.call_from_thread(self.notify, f"Resuming {self.run.name} from its last checkpoint...")
        try:
            self.proc = resume_run(self.run, detach=True, isolated=True)  # a re-check runs in a child
        except UserError as e:
            msg = e.what + (f" ({e.fix})" if e.fix else "")
            self.app.call_from_thread(self.notify, msg, severity="warning", timeout=8)
            return
        self._dirty = True

    def on_run_monitor_state_changed(self, event: "RunMonitor.StateChanged") -> None:
        if event.state in ("completed", "stopped", "failed", "died") and self.redraws > 1:
            sev = "error" if event.state in ("failed", "died") else "information"
            self.notify(f"Run {self.run.name}: {event.state}", severity=sev)
