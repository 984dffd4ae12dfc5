"""Plan an evaluation and start its process. Light (no torch): the CLI and the wizard import it.

An evaluation is a folder plus a worker process that fills it:

    <run>/eval/spec.json        what to evaluate (written here, read by the worker)
               status.json      state (running, completed, failed), pid, current model
               events.jsonl     progress, one JSON object a line (never the trainer's events.jsonl)
               <model>.json     one result per model: metrics, probe, per-sample outputs
               summary.json     the comparison (see ftwizard.evaluation.compare)
               eval.log         the worker's output

Models are named `base`, `base-<k>shot`, `checkpoint-<step>` and `final`. A model whose
result file matches the current spec (same data, sample count, prompt and weights) is
not evaluated again, so an interrupted evaluation resumes where it stopped.

Before training there is no run folder: a baseline (base model only) for a config goes
to `<runs_dir>/.baselines/<key>/`, and a later run with the same base, held-out file
and prompt picks that result up as its first row instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ftwizard.config import RunConfig, load_config
from ftwizard.errors import UserError
from ftwizard.fileio import atomic_write_text
from ftwizard.rundir import ACTIVE_STATES, RunDir, latest_by_step, pid_alive

CHECKPOINT_CHOICES = ("all", "best", "final")
SPEC_VERSION = 1


def eval_dir_for_config(cfg: RunConfig, eval_file: Path) -> Path:
    """Where a config's pre-training baseline lives (hidden from `ftwizard runs`)."""
    ident = json.dumps([cfg.model.base, cfg.model.method == "qlora", str(eval_file), cfg.data.system_prompt])
    return Path(cfg.runs_dir) / ".baselines" / hashlib.sha256(ident.encode()).hexdigest()[:12]


def checkpoint_steps(run: RunDir) -> list[tuple[int, Path]]:
    out = []
    for p in run.checkpoints.glob("checkpoint-*"):
        tail = p.name.split("-")[-1]
        if tail.isdigit() and ((p / "adapter_config.json").is_file() or (p / "config.json").is_file()):
            out.append((int(tail), p))
    return sorted(out)


def best_checkpoint_by_loss(run: RunDir, steps: list[int]) -> int | None:
    """The saved step with the lowest eval loss the trainer logged (None when it logged none there)."""
    evals = {e["step"]: e["eval_loss"] for e in latest_by_step(list(run.iter_events()), "eval")
             if e.get("eval_loss") is not None}
    scored = [(evals[s], s) for s in steps if s in evals]
    return min(scored)[1] if scored else None


def plan_models(cfg: RunConfig, run: RunDir | None, checkpoints: str = "all", baseline_only: bool = False,
                few_shot: int | None = None) -> list[dict[str, Any]]:
    """The models to evaluate, in table order: base, base + k-shot (evaluation.few_shot by default, when the
    training file exists: the guidance compares a fine-tune with the base's best prompt), checkpoints, final."""
    models: list[dict[str, Any]] = [{"id": "base", "label": "base", "kind": "base", "path": None, "step": 0}]
    if few_shot is None:
        few_shot = cfg.evaluation.few_shot if cfg.data.train and Path(cfg.data.train).is_file() else 0
    if few_shot:
        models.append({"id": f"base-{few_shot}shot", "label": f"base {few_shot}-shot", "kind": "base", "path": None,
                       "step": 0, "few_shot": few_shot})
    if baseline_only or run is None:
        return models
    tuned_kind = "full" if cfg.model.method == "full" else "adapter"
    cks = checkpoint_steps(run)
    final = run.model if cfg.model.method == "full" else run.adapter
    has_final = final.is_dir() and any(final.iterdir())
    final_step = run.read_status().get("step") if has_final else None
    if checkpoints == "best" and cks:
        best = best_checkpoint_by_loss(run, [s for s, _ in cks])
        cks = [c for c in cks if c[0] == best] if best is not None else cks[-1:]
    elif checkpoints == "final":
        cks = []
    for step, path in cks:
        if has_final and final_step == step:
            continue  # the final model is this checkpoint's weights: score it once, as final
        models.append({"id": f"checkpoint-{step}", "label": f"step {step}", "kind": tuned_kind, "path": str(path),
                       "step": step})
    if has_final:
        models.append({"id": "final", "label": "final", "kind": tuned_kind, "path": str(final),
                       "step": final_step})
    from ftwizard.rundir import damaged_model_file

    for m in models:  # a garbled adapter or checkpoint is named here, before a worker loads it
        bad = damaged_model_file(Path(m["path"])) if m.get("path") and Path(m["path"]).is_dir() else None
        if bad is not None:
            raise UserError(f"{m['label']} cannot be evaluated: {bad[0].name} {bad[1]}", where=str(bad[0]),
                            fix="evaluate the other models with --checkpoints final or best, or resume training "
                                "to write a new one")
    return models


def judge_settings(judge_cfg) -> dict[str, Any] | None:
    from ftwizard.evaluation.judge import settings_for_spec

    return settings_for_spec(judge_cfg)


def make_spec(cfg: RunConfig, models: list[dict[str, Any]], *, run: RunDir | None, eval_file: Path | None,
              max_samples: int | None, batch_size: int | None, probe: bool = True,
              baseline_dir: Path | None = None, probe_size: int | None = None, metric: str | None = None,
              config_dir: Path | None = None) -> dict[str, Any]:
    """The worker's instructions. The task (math, json, label, text) is fixed here from the held-out
    references and data.task_type, so a wrong --metric or scorer is refused before any model loads."""
    eval_path = Path(eval_file) if eval_file else cfg.data.eval
    if eval_path is None:
        raise UserError("there is no held-out file to evaluate on", where="data.eval",
                        fix="pass --eval-file FILE, or set data.eval in the config (`ftwizard data split` makes one)")
    eval_path = Path(eval_path).resolve()
    if not eval_path.is_file():
        raise UserError(f"held-out file not found: {eval_path}", where="--eval-file / data.eval", fix="check the path")
    if cfg.data.train and Path(cfg.data.train).resolve() == eval_path:
        raise UserError("the held-out file is the training file: scores on it say nothing about new inputs",
                        where=str(eval_path), fix="evaluate on rows never trained on (`ftwizard data split`)")
    if max_samples is not None and max_samples < 1:
        raise UserError("--max-samples must be at least 1")
    from ftwizard.evaluation import metrics as M
    from ftwizard.evaluation.samples import load_samples

    from ftwizard.evaluation.preference import preference_task

    pref = preference_task(cfg, eval_path, max_samples, metric)  # held-out preference pairs (h14b), else None
    refs = [] if pref else [s.reference for s in load_samples(eval_path, cfg.data.format, cfg.data.system_prompt,
                                                              max_samples)]
    task = pref["task"] if pref else M.detect_task(refs, cfg.data.task_type)
    scorer = cfg.evaluation.scorer
    scorer_name = scorer.split(":")[1] if scorer else None
    metric = pref["metric"] if pref else metric or cfg.evaluation.metric or (f"custom:{scorer_name}" if scorer_name else None)
    if metric and not pref:
        choices = M.metric_choices(task, refs, scorer_name)
        if metric not in choices and f"field:{metric}" in choices:
            metric = f"field:{metric}"
        if metric not in choices and f"custom:{metric}" in choices:
            metric = f"custom:{metric}"
        if metric not in choices:
            raise UserError(f"metric {metric!r} does not apply to this {task} task", where="--metric / evaluation.metric",
                            fix="choose one of: " + ", ".join(choices))
    return {
        "version": SPEC_VERSION,
        "run": str(run.path) if run else None,
        "base": cfg.model.base,
        "method": cfg.model.method,
        "trust_remote_code": cfg.model.trust_remote_code,
        "device": cfg.training.device,
        "eval_file": str(eval_path),
        "train_file": str(cfg.data.train) if cfg.data.train else None,
        "format": cfg.data.format,
        "system_prompt": cfg.data.system_prompt,
        "chat_template": cfg.data.chat_template,
        "max_length": cfg.data.max_length,
        "max_samples": max_samples,
        "batch_size": batch_size,
        "probe": probe,
        "probe_size": probe_size,
        "baseline_dir": str(baseline_dir) if baseline_dir else None,
        "task": task,
        "task_type": cfg.data.task_type,
        "metric": metric,
        "scorer": scorer,
        "config_dir": str(config_dir) if config_dir else (str(Path(cfg.data.train).resolve().parent)
                                                         if cfg.data.train else None),
        "models": models,
        "judge": judge_settings(cfg.evaluation.judge),  # h18b: endpoint settings, never the key
        **({"preference": pref["preference"]} if pref else {}),
    }


def read_eval_status(eval_dir: Path) -> dict[str, Any]:
    try:
        st = json.loads((Path(eval_dir) / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"state": "none"}
    if st.get("state") in ACTIVE_STATES and not pid_alive(st.get("pid"), st.get("pid_started")):
        st["state"] = "died"
        st["message"] = f"the eval process (pid {st.get('pid')}) is gone; run `ftwizard eval` again to resume"
    return st


def start_eval(eval_dir: Path, spec: dict[str, Any], detach: bool = False) -> subprocess.Popen:
    """Write the spec and spawn `python -m ftwizard.evaluation.worker EVAL_DIR`."""
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    st = read_eval_status(eval_dir)
    if st.get("state") in ACTIVE_STATES:
        raise UserError(f"an evaluation is already running in {eval_dir} (pid {st.get('pid')})",
                        fix="wait for it to finish; its progress is in events.jsonl there")
    atomic_write_text(eval_dir / "spec.json", json.dumps(spec, indent=2))
    atomic_write_text(eval_dir / "status.json", json.dumps({"state": "starting", "pid": None,
                                                            "started_at": time.time()}))
    log = open(eval_dir / "eval.log", "ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    # OpenMP threads that spin while waiting make a shared CPU crawl (measured 20x slower
    # generation on a loaded 2-core box); passive waiting costs nothing when the CPU is idle.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return subprocess.Popen([sys.executable, "-m", "ftwizard.evaluation.worker", str(eval_dir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=detach, close_fds=True)
    finally:
        log.close()


def resolve_target(target: str, runs_dir: Path) -> tuple[RunConfig, RunDir | None]:
    """A run (name or folder) or a config YAML (baseline before training)."""
    p = Path(target)
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return load_config(p), None
    from ftwizard.rundir import find_run

    run = find_run(target, runs_dir)
    run.require_readable()  # a corrupt run folder is said once, with its file, not evaluated as if fine
    if not run.config.is_file():
        raise UserError(f"run {run.name} has no config.yaml", where=str(run.path),
                        fix="a run folder made by `ftwizard train` has one; was it copied incompletely?")
    return load_config(run.config), run


def describe_event(e: dict) -> str | None:
    """One progress line for an eval event (None for events not worth a line)."""
    ev = e.get("event")
    if ev == "plan":
        return f"  {e['samples']} held-out samples, task: {e['task']}"
    if ev == "engine":
        return f"  model loaded on {e['device']} ({e['precision']})"
    if ev == "model_start":
        return f"  {e['model']}: generating..."
    if ev == "progress" and e.get("done") == e.get("total"):
        return f"  {e['model']}: {e['phase']} {e['done']}/{e['total']}"
    if ev == "model_skipped":
        return f"  {e['model']}: kept ({e.get('reason')})"
    if ev == "model_done":
        return f"  {e['model']}: done"
    if ev == "failed":
        return f"  failed: {e.get('message')}"
    return None


class EvalProgress:
    """Progress and an ETA from the eval's events, for the CLI's lines and the wizard's header.

    Each model runs phases (generate, loss, probe); the current phase's remaining work is
    estimated from its own pace, and each model still to come from the mean time of the
    models finished in this evaluation (or, before any finished, from the current one's
    pace so far). Good to a factor, which is what a person deciding to wait needs.
    """

    def __init__(self) -> None:
        self.models: list[str] = []
        self.finished: list[float] = []     # seconds per model evaluated (not kept) here
        self.skipped: set[str] = set()
        self.current: str | None = None
        self.model_t0: float | None = None
        self.phase: str | None = None
        self.phase_t0: float | None = None
        self.done = self.total = 0
        self.last_time: float | None = None

    def feed(self, e: dict) -> None:
        ev, t = e.get("event"), e.get("time")
        self.last_time = t or self.last_time
        if ev == "plan":
            self.models = list(e.get("models") or [])
        elif ev == "model_skipped":
            self.skipped.add(e.get("model"))
        elif ev == "model_start":
            self.current, self.model_t0, self.phase, self.done, self.total = e.get("model"), t, None, 0, 0
        elif ev == "progress":
            if e.get("phase") != self.phase:
                self.phase, self.phase_t0 = e.get("phase"), t
                self._phase_first = (e.get("done", 0), t)
            self.done, self.total = e.get("done", 0), e.get("total", 0)
        elif ev == "model_done":
            if self.model_t0 is not None and t is not None:
                self.finished.append(t - self.model_t0)
            self.current = None

    def remaining_models(self) -> int:
        left = [m for m in self.models if m not in self.skipped]
        return max(0, len(left) - len(self.finished) - (1 if self.current else 0))

    def eta_s(self, now: float | None = None) -> float | None:
        import time as _time

        now = now or _time.time()
        if self.current is None or self.model_t0 is None:
            return None
        phase_left = None
        first = getattr(self, "_phase_first", None)
        if self.total and first and self.done > first[0] and first[1] is not None:
            rate = (now - first[1]) / (self.done - first[0])
            phase_left = rate * (self.total - self.done)
        per_model = sum(self.finished) / len(self.finished) if self.finished else None
        if per_model is None:
            if phase_left is None:
                return None
            per_model = (now - self.model_t0) + phase_left  # a floor: later phases are not counted yet
        current_left = phase_left if phase_left is not None else max(0.0, per_model - (now - self.model_t0))
        return current_left + per_model * self.remaining_models()

    def line(self, now: float | None = None) -> str:
        if self.current is None:
            return ""
        step = f"{self.current}: {self.phase or 'loading'}"
        if self.total:
            step += f" {self.done}/{self.total}"
        n_models = len([m for m in self.models if m not in self.skipped])
        pos = len(self.finished) + 1
        if n_models:
            step += f" (model {min(pos, n_models)} of {n_models})"
        eta = self.eta_s(now)
        if eta is not None and eta >= 1:
            step += f", about {fmt_duration(eta)} left"
        return step


def fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
