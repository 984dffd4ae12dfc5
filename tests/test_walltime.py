"""Wall time on this machine from measured throughput (ftwizard.hardware.walltime).

The fast tests check the arithmetic and the cache with a given measurement; the slow one
measures this machine with the real probe, then runs the real trainer and compares."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ftwizard.config import load_config
from tests.helpers import tiny_config


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from ftwizard.hardware import walltime

    path = tmp_path / "walltime.json"
    monkeypatch.setattr(walltime, "_cache_path", lambda: path)
    return path


def a_calibration(cfg, rate=1e10, startup=20.0):
    from ftwizard.hardware.walltime import Calibration, device_key

    return Calibration(device=device_key(cfg), method=cfg.model.method, model=cfg.model.base, rate_flops_s=rate,
                       startup_s=startup, s_per_microbatch=1.0, flops_per_microbatch=rate, measured_at=time.time(),
                       load_avg=1.0)


def test_no_measurement_no_number_and_the_check_says_why(tmp_path, cache):
    from ftwizard.hardware.walltime import plan_times
    from ftwizard.preflight import run_check

    cfg = load_config(tiny_config(tmp_path))
    rep = run_check(cfg)
    assert "walltime" not in rep.facts and any(s.startswith("wall time:") for s in rep.skipped)
    times = plan_times(cfg, pilot_steps=2, report=rep)
    assert times["calibrated"] is False and times["full"] is None and times["pilot"] is None


def test_the_estimate_scales_with_the_plan_and_is_cached(tmp_path, cache):
    from ftwizard.hardware.walltime import estimate_walltime, load_calibration, plan_times, save_calibration
    from ftwizard.preflight import run_check

    cfg = load_config(tiny_config(tmp_path, max_steps=40, eval_every=10))
    save_calibration(a_calibration(cfg))
    assert load_calibration(cfg) is not None and json.loads(cache.read_text())  # stored, read back
    rep = run_check(cfg)
    assert rep.train_lengths and len(rep.train_lengths) == 16
    times = plan_times(cfg, pilot_steps=10, report=rep)
    full, pilot = times["full"], times["pilot"]
    assert full.steps == 40 and pilot.steps == 10
    assert full.train_s == pytest.approx(4 * pilot.train_s)  # same micro-batch, 4x the steps
    assert full.eval_s == pytest.approx(4 * pilot.eval_s)    # evaluations at 10, 20, 30, 40 vs once at 10
    assert full.seconds == pytest.approx(full.startup_s + full.train_s + full.eval_s)
    assert full.startup_s == 20.0 and "on this CPU" in full.text
    # a twice-as-fast machine halves the compute part, not the measured start-up
    fast = estimate_walltime(cfg, rep.train_lengths, eval_lengths=rep.eval_lengths,
                             calibration=a_calibration(cfg, rate=2e10))
    assert fast.train_s == pytest.approx(full.train_s / 2) and fast.startup_s == full.startup_s
    # the pre-flight shows it (check, train, the wizard's plan)
    rep2 = run_check(cfg)
    assert rep2.facts["walltime"]["steps"] == 40 and "about" in rep2.facts["walltime"]["text"]
    from ftwizard.preflight.render import summary_line

    assert "on this CPU" in summary_line(rep2)


def test_another_method_is_not_priced_with_this_ones_measurement(tmp_path, cache):
    from ftwizard.hardware.walltime import load_calibration, save_calibration

    cfg = load_config(tiny_config(tmp_path))
    save_calibration(a_calibration(cfg))
    full = cfg.model_copy(update={"model": cfg.model.model_copy(update={"method": "full"})})
    assert load_calibration(full) is None


@pytest.mark.slow
def test_measured_estimate_against_a_real_run(tmp_path, cache):
    """Probe this machine, predict a real run of 8 steps, run it, compare (a loaded shared box:
    the tolerance is wide; docs/benchmarks.md has the demo's numbers)."""
    from ftwizard.hardware.walltime import calibrate, plan_times

    path = tiny_config(tmp_path, max_steps=8, save_every=0, eval_every=4)
    cfg = load_config(path)
    cal = calibrate(cfg)
    assert cal.rate_flops_s > 0 and cal.startup_s > 0
    predicted = plan_times(cfg)["full"].seconds
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "ftwizard", "train", str(path), "--name", "timed"], capture_output=True,
                       text=True, timeout=1200, cwd=tmp_path)
    actual = time.time() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert 0.5 < predicted / actual < 2.0, (predicted, actual)


def test_a_completed_run_teaches_the_speed(tmp_path, cache):
    """learn_from_run reads a finished run's events: s per micro-batch without the evaluations inside,
    the evaluations' own rate, and the start-up (launch to the end of the first step's warm-up)."""
    from ftwizard.hardware.walltime import learn_from_run, load_calibration
    from ftwizard.preflight import run_check
    from ftwizard.rundir import EventWriter, RunDir

    cfg = load_config(tiny_config(tmp_path, max_steps=10, gradient_accumulation=2, eval_every=5))
    run_check(cfg)  # the lint cache a real start leaves behind
    run = RunDir(tmp_path / "runs" / "done")
    run.path.mkdir(parents=True)
    cfg.save(run.config)
    t0 = 1000.0
    run.write_status(state="completed", started_at=t0)
    w = EventWriter(run.events)
    w.write("system", event="train_begin", step=0, time=t0 + 30)  # 30 s to load
    t, elapsed = t0 + 30, 0.0
    for step in range(1, 11):
        elapsed += 4.0 + (5.0 if step == 1 else 0.0)  # 2 micro-batches of 2 s; the first step warms up 5 s more
        w.write("train", step=step, loss=1.0, elapsed_s=elapsed, time=t + elapsed)
        if step % 5 == 0:
            w.write("eval", step=step, eval_loss=1.0, elapsed_s=elapsed + 3.0, time=t + elapsed + 3.0)
            elapsed += 3.0  # the evaluation took 3 s
    w.close()
    cal = learn_from_run(run.path)
    assert cal is not None and cal.source == "run done"
    assert cal.s_per_microbatch == pytest.approx(2.0)
    assert cal.startup_s == pytest.approx(35.0)
    assert cal.eval_rate_flops_s and cal.eval_rate_flops_s > 0
    assert load_calibration(cfg).source == "run done"
    # a short run teaches nothing
    short = RunDir(tmp_path / "runs" / "short")
    short.path.mkdir()
    cfg.save(short.config)
    short.write_status(state="completed", started_at=t0)
    assert learn_from_run(short.path) is None
