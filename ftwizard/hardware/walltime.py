"""Wall time on this machine, CPU included, from measured throughput.

The GPU estimate divides FLOPs by a catalog peak x utilisation; a CPU has no such number,
and a shared machine's speed is whatever it is today. So the speed is measured: a probe
runs the real trainer for a few micro-batches of the run's own model, method and data
(`calibrate`, a subprocess, ~20-60 s on a CPU) and stores what one second buys here:

    rate      FLOPs per second through the trainer (the throughput model's FLOPs per token,
              ftwizard.hardware.throughput, over the measured seconds per micro-batch)
    eval rate forward-only FLOPs per second of the probe's closing evaluation (8 eval rows):
              an evaluation is not a training step with the backward left out (measured
              here: twice the training rate per FLOP)
    startup   seconds from launching the trainer to its first step (imports, model, data)

in `<cache>/walltime.json`, keyed by device (CPU model and core count, or GPU name) and
method. `estimate_walltime` then prices any plan of that method on that device:

    time = startup + micro-batches x FLOPs per micro-batch / rate
                   + evaluations x eval rows x FLOPs per eval row / eval rate

A probe measured the run's own shapes exactly; a different batch size or length is scaled
by FLOPs (CPU matrix throughput changes a little with size: the error is reported in
docs/benchmarks.md). Light: no torch here; only `calibrate` starts a process that has it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROBE_MICRO = 12         # about this many micro-batches: whole optimizer steps of the run's own accumulation
PROBE_MIN_STEPS = 3      # the first step (warm-up) is not timed, the median of the rest is
CACHE_FILE = "walltime.json"
STALE_S = 30 * 86400     # re-measure after a month (drivers, library versions change)


@dataclass
class Calibration:
    device: str               # "cpu: <model> x<cores>" or "cuda: <gpu name>"
    method: str
    model: str
    rate_flops_s: float       # FLOPs per second through the trainer
    startup_s: float          # launch to first step
    s_per_microbatch: float   # as measured, on the probe's shapes
    flops_per_microbatch: float
    measured_at: float
    load_avg: float | None    # 1-minute load average while measuring (a shared machine is slower when loaded)
    eval_rate_flops_s: float | None = None  # forward-only FLOPs per second (the probe's evaluation)
    probe_wall_s: float | None = None       # the probe process, launch to exit
    probe_cpu_s: float | None = None        # its CPU seconds (user + system): load-proof, unlike the wall time
    source: str = "probe"                   # "probe", or "run NAME" (learned from a finished run here)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WallTime:
    seconds: float
    startup_s: float
    train_s: float
    eval_s: float
    steps: int
    micro_batches: int
    s_per_step: float
    device: str
    calibration: dict[str, Any]

    @property
    def text(self) -> str:
        """One line for a plan: "about 12 min on this CPU (measured: 3.1 s per step)"."""
        where = "this CPU" if self.device.startswith("cpu") else "this GPU"
        return f"about {fmt_minutes(self.seconds)} on {where} (measured here: {self.s_per_step:.1f} s per step)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["text"] = self.text
        return d


def fmt_minutes(s: float) -> str:
    if s < 90:
        return f"{max(1, round(s / 10) * 10):.0f} s"
    m = s / 60
    if m < 90:
        return f"{round(m):.0f} min"
    return f"{m / 60:.1f} h"


# ---- which device --------------------------------------------------------------------------
def device_key(cfg) -> str:
    """The device a run of `cfg` trains on, as a cache key (NVML for GPUs: no torch import)."""
    if cfg.training.device != "cpu":
        try:
            from ftwizard.hardware.gpus import detect

            d = detect()
            if d.gpus:
                return f"cuda: {d.gpus[0].name}"
        except Exception:  # noqa: BLE001 - no NVML: a CPU run
            pass
    return f"cpu: {_cpu_name()} x{os.cpu_count() or 1}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- the cache -----------------------------------------------------------------------------
def _cache_path() -> Path:
    """<cache>/walltime.json; FTWIZARD_WALLTIME_CACHE names another file (the tests use a temporary one)."""
    env = os.environ.get("FTWIZARD_WALLTIME_CACHE")
    if env:
        return Path(env).expanduser()
    from ftwizard.paths import cache_dir

    return cache_dir() / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


MODEL_VERSION = 2  # bump when the FLOPs model changes: a rate measured under another model is not comparable


def _key(device: str, method: str) -> str:
    return f"v{MODEL_VERSION} | {device} | {method}"


def load_calibration(cfg) -> Calibration | None:
    """The stored measurement for this device and method (None: not measured, or stale)."""
    entry = _read_cache().get(_key(device_key(cfg), cfg.model.method))
    if not isinstance(entry, dict):
        return None
    try:
        cal = Calibration(**entry)
    except TypeError:
        return None
    if time.time() - cal.measured_at > STALE_S or cal.rate_flops_s <= 0:
        return None
    return cal


def save_calibration(cal: Calibration) -> None:
    from filelock import FileLock

    from ftwizard.fileio import atomic_write_text

    p = _cache_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(p) + ".lock", timeout=30):
        data = _read_cache()
        data[_key(cal.device, cal.method)] = cal.to_dict()
        atomic_write_text(p, json.dumps(data, indent=1))


# ---- the model -----------------------------------------------------------------------------
def _tokens_per_row(lengths: list[int] | None, batch: int, max_length: int, packing: bool,
                    padding_free: bool = False) -> float:
    """Tokens a row costs: padded to its micro-batch's longest, or (padding-free batches, the
    trainer's default) its own length; packed rows are max_length long."""
    from ftwizard.hardware.throughput import expected_padded_length

    if packing:
        return float(max_length)
    if not lengths:
        return max_length / 2  # unknown data: half the max length
    if padding_free or batch <= 1:
        xs = [min(x, max_length) for x in lengths if x > 0]
        return sum(xs) / len(xs) if xs else max_length / 2
    return expected_padded_length(list(lengths), batch, max_length)


def flops_per_microbatch(cfg, lengths: list[int] | None, *, eval_only: bool = False) -> float:
    """Training FLOPs of one micro-batch of `cfg` (forward + backward as the throughput model
    counts them), or, with eval_only, of one forward pass over one eval row."""
    from ftwizard.hardware.shapes import resolve_shape
    from ftwizard.hardware.throughput import forward_flops_per_token, passes

    shape = resolve_shape(cfg.model.base)
    t = cfg.training
    per_row = _tokens_per_row(lengths, t.batch_size, cfg.data.max_length, cfg.data.packing,
                              bool(getattr(cfg.data, "padding_free", False)))
    seq = min(cfg.data.max_length, max(1, int(round(per_row))))
    fwd = forward_flops_per_token(shape, seq)
    if eval_only:
        return per_row * fwd
    return t.batch_size * per_row * fwd * passes(cfg.model.method, t.gradient_checkpointing)


def _n_evals(cfg, steps: int, has_eval: bool) -> int:
    if not has_eval:
        return 0
    every = cfg.training.eval_every
    if not every:
        return 1  # once at the end
    return steps // every + (1 if steps % every else 0)  # the Trainer evaluates every N steps and at the end


def estimate_walltime(cfg, lengths: list[int] | None, rows: int | None = None, *, eval_lengths: list[int] | None = None,
                      max_steps: int | None = None, calibration: Calibration | None = None) -> WallTime | None:
    """Seconds for a run of `cfg` on this machine (None until the device and method are calibrated).

    lengths: token counts of the training rows (the pre-flight's exact counts); rows defaults to
    their number. max_steps: price a pilot (or any cap) instead of the config's plan."""
    from ftwizard.advice import training_plan

    cal = calibration or load_calibration(cfg)
    if cal is None:
        return None
    rows = rows if rows is not None else (len(lengths) if lengths else None)
    if max_steps is not None:
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_steps": max_steps})})
    plan = training_plan(cfg, rows)
    if not plan.steps:
        return None
    micro = plan.steps * cfg.training.gradient_accumulation
    train_s = micro * flops_per_microbatch(cfg, lengths) / cal.rate_flops_s
    n_eval_rows = len(eval_lengths) if eval_lengths else 0
    eval_s = 0.0
    if n_eval_rows:
        eval_rate = cal.eval_rate_flops_s or cal.rate_flops_s
        eval_s = (_n_evals(cfg, plan.steps, True) * n_eval_rows * flops_per_microbatch(cfg, eval_lengths, eval_only=True)
                  / eval_rate)
    total = cal.startup_s + train_s + eval_s
    return WallTime(seconds=total, startup_s=cal.startup_s, train_s=train_s, eval_s=eval_s, steps=plan.steps,
                    micro_batches=micro, s_per_step=train_s / plan.steps, device=cal.device,
                    calibration=cal.to_dict())


def plan_times(cfg, pilot_steps: int | None = None, report=None) -> dict[str, Any]:
    """What the wizard's plan panel shows: {"full": WallTime|None, "pilot": WallTime|None,
    "calibrated": bool, "device": str}. Uses the exact token lengths of a pre-flight `report`
    (made with data="lint" or "cached"); makes a cached check when none is given."""
    if report is None:
        from ftwizard.preflight import run_check

        report = run_check(cfg, data="cached")
    lengths = getattr(report, "train_lengths", None)
    eval_lengths = getattr(report, "eval_lengths", None)
    rows = report.facts.get("rows") if report.facts else None
    cal = load_calibration(cfg)
    full = estimate_walltime(cfg, lengths, rows, eval_lengths=eval_lengths, calibration=cal) if cal else None
    pilot = (estimate_walltime(cfg, lengths, rows, eval_lengths=eval_lengths, max_steps=pilot_steps, calibration=cal)
             if cal and pilot_steps else None)
    return {"full": full, "pilot": pilot, "calibrated": cal is not None, "device": device_key(cfg)}


# ---- the probe -----------------------------------------------------------------------------
def probe_config(cfg, eval_file: Path | None = None):
    """The run's config cut to a probe: a few optimizer steps (about PROBE_MICRO micro-batches, at least
    PROBE_MIN_STEPS steps), one evaluation at the end over `eval_file` (a few rows), no checkpoints,
    in a throw-away folder."""
    # the run's own accumulation: an optimizer step (and its logging) per micro-batch would make a CPU probe
    # ~1.5x slower per micro-batch than the run it prices (measured: docs/benchmarks.md)
    accum = cfg.training.gradient_accumulation
    steps = max(PROBE_MIN_STEPS, -(-PROBE_MICRO // accum))
    upd = {"max_steps": steps, "eval_every": 0, "save_every": 0, "log_every": 1, "stop_on_divergence": False}
    if "report_to" in type(cfg.training).model_fields:
        upd["report_to"] = []  # a probe is not an experiment: no tracker sees it
    out = {"training": cfg.training.model_copy(update=upd), "data": cfg.data.model_copy(update={"eval": eval_file}),
           "name": "walltime-probe"}
    if "notify" in type(cfg).model_fields:  # nor does anyone get a "completed" message for it
        out["notify"] = type(cfg.notify)(url=None, events=[])
    return cfg.model_copy(update=out)


def calibrate(cfg, *, timeout_s: float = 900, progress=None) -> Calibration:
    """Measure this machine: run the real trainer on a probe of `cfg` (its model, method, data and
    micro-batch), time its steps, store and return the calibration. Raises UserError on failure."""
    from ftwizard.errors import UserError
    from ftwizard.rundir import EventReader, RunDir

    with tempfile.TemporaryDirectory(prefix="ftwizard-probe-") as tmp:
        eval_file = _probe_eval_file(cfg, Path(tmp))
        probe = probe_config(cfg, eval_file)
        run = RunDir(Path(tmp) / "walltime-probe")
        run.path.mkdir()
        probe = probe.model_copy(update={"runs_dir": Path(tmp)})
        probe.save(run.config)
        run.write_status(state="starting", pid=None, started_at=time.time(), step=0)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        import resource

        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        with open(run.log, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "ftwizard.training.worker", str(run.path)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=str(run.path))
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise UserError(f"the speed probe took longer than {timeout_s:.0f} s", fix="try again when the machine "
                            "is less busy") from None
        probe_wall = time.time() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        probe_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        events = EventReader(run.events).read_new()
        begin = next((e for e in events if e.get("event") == "train_begin"), None)
        steps = {e["step"]: e for e in events if e.get("kind") == "train" and isinstance(e.get("step"), int)}
        if rc != 0 or begin is None or len(steps) < 2:
            tail = run.log.read_text(errors="replace").strip().splitlines()[-3:] if run.log.exists() else []
            raise UserError("the speed probe did not finish: " + (" | ".join(tail) or f"exit code {rc}"))
        first, last = min(steps), max(steps)
        accum = probe.training.gradient_accumulation
        s_per_mb = _median_step(steps) / accum  # the median: one burst of load on a shared machine does not set it
        startup = begin["time"] - t0 + steps[first]["elapsed_s"] - s_per_mb * accum  # launch to the end of step 0
        end = next((e for e in events if e.get("event") == "train_end"), None)
        ev = next((e for e in events if e.get("kind") == "eval"), None)
        eval_s = ev["time"] - end["time"] if ev is not None and end is not None else None
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        # exact token lengths of what the probe trained and evaluated on (a child process: no transformers here)
        from ftwizard.preflight.gate import preflight_report

        rep = preflight_report(probe, isolated=True)
        lengths, eval_lengths = rep.train_lengths, rep.eval_lengths
        eval_flops = None
        if eval_file is not None and eval_s and eval_s > 0 and eval_lengths:
            eval_flops = len(eval_lengths) * flops_per_microbatch(probe, eval_lengths, eval_only=True)
    fpm = flops_per_microbatch(probe, lengths)
    cal = Calibration(device=device_key(cfg), method=cfg.model.method, model=cfg.model.base,
                      rate_flops_s=fpm / max(s_per_mb, 1e-6), startup_s=max(0.0, startup),
                      s_per_microbatch=s_per_mb, flops_per_microbatch=fpm, measured_at=time.time(),
                      load_avg=round((load0 + load1) / 2, 2) if load0 is not None else None,
                      eval_rate_flops_s=eval_flops / eval_s if eval_flops else None,
                      probe_wall_s=round(probe_wall, 1), probe_cpu_s=round(probe_cpu, 1))
    save_calibration(cal)
    return cal


PROBE_EVAL_ROWS = 8


def _median_step(steps: dict[int, dict]) -> float:
    keys = sorted(steps)
    deltas = sorted((steps[b]["elapsed_s"] - steps[a]["elapsed_s"]) / (b - a) for a, b in zip(keys, keys[1:]))
    n = len(deltas)
    return deltas[n // 2] if n % 2 else (deltas[n // 2 - 1] + deltas[n // 2]) / 2


MIN_LEARN_STEPS = 8  # fewer logged steps measure too little to replace a calibration


def learn_from_run(run_path: Path | str) -> Calibration | None:
    """Calibrate from a finished run on this machine: its many steps measure the speed better than
    the probe's few. Reads the run folder (events, status, config) and the cached token lengths;
    stores and returns the calibration, or None when the run says too little (under 8 logged
    steps, a resume in between, no cached lint). The trainer calls it when a run completes."""
    from ftwizard.config import load_config
    from ftwizard.preflight import run_check
    from ftwizard.rundir import RunDir, latest_by_step

    run = RunDir(run_path)
    cfg = load_config(run.config)
    events = list(run.iter_events())
    if any(e.get("event") == "resumed" for e in events):
        return None  # two processes' timings mixed: not one clean measurement
    train = latest_by_step(events, "train")
    begin = next((e for e in events if e.get("event") == "train_begin"), None)
    started = run.read_status().get("started_at")
    if len(train) < MIN_LEARN_STEPS or begin is None or not isinstance(started, (int, float)):
        return None
    rep = run_check(cfg, data="cached")
    if not rep.train_lengths:
        return None
    evals = [e for e in events if e.get("kind") == "eval"]
    # each evaluation's time: from the train event of its step to the eval event
    by_step = {e["step"]: e for e in train}
    eval_s = [e["time"] - by_step[e["step"]]["time"] for e in evals if e.get("step") in by_step]
    first, last = train[0], train[-1]
    inside = sum(d for e, d in zip(evals, eval_s) if first["step"] <= e.get("step", -1) < last["step"])
    micro = (last["step"] - first["step"]) * cfg.training.gradient_accumulation
    span = last["elapsed_s"] - first["elapsed_s"] - inside
    if micro <= 0 or span <= 0:
        return None
    fpm = flops_per_microbatch(cfg, rep.train_lengths)
    s_per_mb = span / micro
    eval_rate = None
    if eval_s and rep.eval_lengths:
        eval_flops = len(rep.eval_lengths) * flops_per_microbatch(cfg, rep.eval_lengths, eval_only=True)
        eval_rate = eval_flops / (sum(eval_s) / len(eval_s)) if sum(eval_s) > 0 else None
    # launch to train_begin, plus the first logged step's excess over a normal step (warm-up)
    startup = (begin["time"] - started) + first["elapsed_s"] - first["step"] * s_per_mb * cfg.training.gradient_accumulation
    cal = Calibration(device=device_key(cfg), method=cfg.model.method, model=cfg.model.base,
                      rate_flops_s=fpm / s_per_mb, startup_s=max(0.0, startup), s_per_microbatch=s_per_mb,
                      flops_per_microbatch=fpm, measured_at=time.time(), load_avg=None,
                      eval_rate_flops_s=eval_rate, source=f"run {run.name}")
    save_calibration(cal)
    return cal


def _probe_eval_file(cfg, folder: Path) -> Path | None:
    """The first PROBE_EVAL_ROWS rows of the eval file (JSONL), so the probe also times an evaluation."""
    src = cfg.data.eval
    if src is None or Path(src).suffix.lower() not in (".jsonl", ".ndjson"):
        return None
    try:
        with open(src, encoding="utf-8") as f:
            lines = [line for _, line in zip(range(PROBE_EVAL_ROWS), f) if line.strip()]
    except OSError:
        return None
    if not lines:
        return None
    out = folder / "probe-eval.jsonl"
    out.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m ftwizard.hardware.walltime CONFIG`: measure this machine for CONFIG and print the plan's time."""
    import argparse

    from ftwizard.config import load_config

    p = argparse.ArgumentParser(prog="python -m ftwizard.hardware.walltime")
    p.add_argument("config")
    p.add_argument("--pilot-steps", type=int)
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    cal = calibrate(cfg)
    times = plan_times(cfg, args.pilot_steps)
    out = {"calibration": cal.to_dict(), "full": times["full"].to_dict() if times["full"] else None,
           "pilot": times["pilot"].to_dict() if times["pilot"] else None}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
