"""Evaluate: base against each checkpoint against the final model, side by side.

The evaluation is its own process (`python -m ftwizard.evaluation.worker`, started by
`ftwizard.evaluation.launch`), so the wizard never imports torch; this pane polls the
eval folder's status.json and events.jsonl and shows `summary.json` through the same
Rich views as `ftwizard eval`. Before training, `b` scores the base model on the
held-out file (the baseline), so the user sees whether fine-tuning is needed at all.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from ftwizard.evaluation import launch
from ftwizard.evaluation.compare import read_summary
from ftwizard.rundir import EventReader, RunDir, list_runs
from ftwizard.tui.workers import ReportsWorkerErrors


# The objective's own held-out metrics, base against tuned, when eval/summary.json carries them (names from
# ftwizard.evaluation: preference.py and toolcalls.py). (metric, label, percent?)
OBJECTIVE_METRICS = {
    "preference (held-out pairs)": [("pref_accuracy", "preference accuracy", True),
                                    ("pref_accuracy_norm", "accuracy, length-normalised", True),
                                    ("reward_margin", "reward margin", False)],
    "tool calls": [("tool_name_accuracy", "tool name accuracy", True), ("tool_args_exact", "arguments exact match", True),
                   ("tool_json_valid", "valid JSON arguments", True)],
}


def _pick(summary: dict) -> tuple[dict | None, dict | None]:
    """The base model (zero-shot) and the tuned model the verdict is about (the best checkpoint, else final)."""
    models = summary.get("models") or []
    base = next((m for m in models if m.get("id") == "base"), None) or next(
        (m for m in models if m.get("kind") == "base"), None)
    tuned = [m for m in models if m.get("kind") != "base"]
    best = summary.get("best_checkpoint")
    pick = next((m for m in tuned if m.get("id") == best), None) or next(
        (m for m in tuned if m.get("id") == "final"), None) or (tuned[-1] if tuned else None)
    return base, pick


def _fmt(value, percent: bool) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value * 100:.0f}%" if percent else f"{value:+.2f}"


def objective_view(summary: dict) -> Text | None:
    """"preference accuracy  base 50%  ->  final 85%  (+35 points)", one line per metric the summary has."""
    base, tuned = _pick(summary)
    out = Text()
    for title, metrics in OBJECTIVE_METRICS.items():
        rows = [(name, label, pct) for name, label, pct in metrics
                if any(name in (m or {}).get("metrics", {}) for m in (base, tuned))]
        if not rows:
            continue
        out.append(f"{title}: base -> {tuned['label'] if tuned else 'tuned'}\n", style="bold")
        for name, label, pct in rows:
            b = (base or {}).get("metrics", {}).get(name)
            t = (tuned or {}).get("metrics", {}).get(name)
            out.append(f"  {label:<28}", style="dim")
            out.append(f"{_fmt(b, pct):>7}  ->  ")
            better = isinstance(b, (int, float)) and isinstance(t, (int, float)) and t > b
            out.append(f"{_fmt(t, pct):>7}", style="bold green" if better else "bold")
            if isinstance(b, (int, float)) and isinstance(t, (int, float)):
                d = (t - b) * 100 if pct else t - b
                out.append(f"  ({d:+.0f} points)" if pct else f"  ({d:+.2f})", style="dim")
            out.append("\n")
    return out if out else None


class EvaluateStep(ReportsWorkerErrors, Vertical):
    TITLE = "Evaluate"
    DEFAULT_CSS = """
    EvaluateStep #eval-head { height: auto; margin: 1 0 0 0; }
    EvaluateStep #eval-body { height: 1fr; }
    EvaluateStep #eval-sample { border: round $primary 50%; padding: 0 1; height: auto; }
    """
    BINDINGS = [
        Binding("e", "evaluate", "Evaluate"),
        Binding("b", "baseline", "Baseline"),
        Binding("r", "next_run", "Other run"),
        Binding("pageup", "sample(-1)", "Prev sample"),
        Binding("pagedown", "sample(1)", "Next sample"),
    ]
    can_focus = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.run: RunDir | None = None
        self.eval_dir: Path | None = None
        self.summary: dict | None = None
        self.sample = 0
        self.progress = launch.EvalProgress()
        self.reader: EventReader | None = None
        self.run_index = 0

    def compose(self) -> ComposeResult:
        yield Static(id="eval-head")
        with VerticalScroll(id="eval-body"):
            yield Static(id="eval-objective")
            yield Static(id="eval-table")
            yield Static(id="eval-sample")

    def on_mount(self) -> None:
        self.query_one("#eval-sample").border_title = "sample (PgUp/PgDn)"
        self.set_interval(1.0, self.poll)

    def on_show(self) -> None:
        self.pick_run()

    def focus_first(self) -> None:
        self.focus()

    # ---- which run -----------------------------------------------------------------
    def _runs(self) -> list[RunDir]:
        runs_dir = Path(self.app.state.config.runs_dir)
        found = [RunDir(s.path) for s in list_runs(runs_dir)]
        started = self._started_run()
        if started is not None:
            found = [started] + [r for r in found if r.path != started.path]
        return found

    def _started_run(self) -> RunDir | None:
        """The run the Train step started in this session, if any."""
        from ftwizard.tui.screens.train import TrainStep

        for step in self.screen.query(TrainStep):
            if step.monitor is not None:
                return step.monitor.run
        return None

    def pick_run(self) -> None:
        runs = self._runs()
        self.run = runs[self.run_index % len(runs)] if runs else None
        self._set_eval_dir()

    def action_next_run(self) -> None:
        self.run_index += 1
        self.pick_run()

    def _baseline_dir(self) -> Path | None:
        cfg = self.app.state.config
        return launch.eval_dir_for_config(cfg, Path(cfg.data.eval).resolve()) if cfg.data.eval else None

    def _set_eval_dir(self) -> None:
        new = self.run.eval_dir if self.run is not None else self._baseline_dir()
        if new != self.eval_dir:
            self.eval_dir = new
            self.reader = EventReader(new / "events.jsonl") if new else None
            if self.reader:
                self.reader.read_new()
            self.summary = None
            self.sample = 0
            self.progress = launch.EvalProgress()
        self.poll()

    # ---- polling the eval folder ------------------------------------------------------
    def poll(self) -> None:
        if not self.is_attached or self.eval_dir is None:
            self.render_all()
            return
        if self.reader is not None:
            for e in self.reader.read_new():
                if e.get("event") in ("plan", "start"):
                    self.progress = launch.EvalProgress()
                self.progress.feed(e)
        summary = read_summary(self.eval_dir)
        if summary is not None and summary != self.summary:
            self.summary = summary
        self.render_all()

    def render_all(self) -> None:
        head = Text()
        cfg = self.app.state.config
        if self.run is not None:
            head.append(f"run {self.run.name}", style="bold")
            head.append(f" ({self.run.status().get('state')})  ", style="dim")
        else:
            head.append("no run yet: ", style="bold")
            head.append("press b to score the base model on the held-out file first (the baseline, with and "
                        "without a k-shot prompt from training rows).  ", style="")
        if not cfg.data.eval:
            head.append("\nx no held-out file (data.eval): set one on the Data step (Ctrl+X splits)", style="bold red")
        st = launch.read_eval_status(self.eval_dir) if self.eval_dir else {"state": "none"}
        state = st.get("state")
        if state in ("starting", "running"):
            head.append(f"evaluating... {self.progress.line() or 'loading the model'}", style="yellow")
        elif state == "failed" or state == "died":
            head.append(f"evaluation {state}: {st.get('message')}", style="bold red")
        elif self.summary is None:
            head.append("e evaluates base, each checkpoint and final; results stay in the run folder.", style="dim")
        self.query_one("#eval-head", Static).update(head)
        from ftwizard.evaluation.report import metrics_table, sample_view, verdict_text

        objective = objective_view(self.summary) if self.summary and self.summary.get("models") else None
        box = self.query_one("#eval-objective", Static)
        box.update(objective or "")
        box.display = objective is not None
        if self.summary and self.summary.get("models"):
            self.query_one("#eval-table", Static).update(Group(metrics_table(self.summary),
                                                               verdict_text(self.summary)))
            self.query_one("#eval-sample", Static).update(sample_view(self.summary, self.sample))
        else:
            self.query_one("#eval-table", Static).update(Text(""))
            self.query_one("#eval-sample", Static).update(Text("no results yet", style="dim"))

    def action_sample(self, delta: int) -> None:
        n = len((self.summary or {}).get("samples") or [])
        if n:
            self.sample = (self.sample + delta) % n
            self.render_all()

    # ---- starting an evaluation -----------------------------------------------------------
    def action_evaluate(self) -> None:
        if self.run is None:
            self.notify("no run to evaluate yet: train one first (or press b for the baseline)", severity="warning")
            return
        self._start(baseline_only=False)

    def action_baseline(self) -> None:
        self._start(baseline_only=True)

    @work(thread=True, exclusive=True, group="eval-start", exit_on_error=False)
    def _start(self, baseline_only: bool, few_shot: int | None = None) -> None:
        from ftwizard.config import load_config
        from ftwizard.errors import UserError

        try:
            if self.run is not None:
                cfg = load_config(self.run.config)
                eval_dir = self.run.eval_dir
            else:
                cfg = self.app.state.config
                eval_dir = self._baseline_dir()
            baseline_dir = (launch.eval_dir_for_config(cfg, Path(cfg.data.eval).resolve())
                            if cfg.data.eval else None)
            if eval_dir is None:
                raise UserError("there is no held-out file to evaluate on", fix="set data.eval on the Data step")
            models = launch.plan_models(cfg, self.run, "all", baseline_only, few_shot)
            spec = launch.make_spec(cfg, models, run=self.run, eval_file=None, max_samples=None, batch_size=None,
                                    baseline_dir=baseline_dir)
            launch.start_eval(eval_dir, spec, detach=True)
        except UserError as e:
            self.app.call_from_thread(self.notify, e.what + (f" ({e.fix})" if e.fix else ""), severity="error",
                                      timeout=10)
            return
        self.app.call_from_thread(self.notify, f"evaluating {', '.join(m['id'] for m in models)} in the background")
        self.app.call_from_thread(self.poll)
