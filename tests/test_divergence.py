"""The divergence guard: one domain function judges the curve; the trainer writes its verdict as
an event (and stops with a checkpoint when training.stop_on_divergence); monitor, runs and the
final message show it. The slow test is a real tiny CPU run at a learning rate of 0.5."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml

from ftwizard.monitoring import DIVERGE_FACTOR, RISE_FACTOR, RISE_WINDOW, describe_event, detect_divergence
from tests.helpers import tiny_config


def curve(values):
    return list(enumerate(values, start=1))


def test_a_falling_noisy_curve_is_not_divergence():
    vals = [2.0 * math.exp(-i / 15) * (1.25 if i % 3 == 0 else 0.9) for i in range(60)]
    for n in range(1, len(vals) + 1):
        assert detect_divergence(curve(vals[:n])) is None
    # NaN/inf points are the NaN stop's business, not this one's
    assert detect_divergence(curve([2.0, 1.9, float("nan"), 1.8, float("inf"), 1.7])) is None


def test_loss_well_above_its_start_trigger_and_near_miss():
    start = 2.0
    hit = detect_divergence(curve([start, 1.9, 2.1, 3.0, 3.0, 3.1]), fix="lower it")
    assert hit is not None and hit.kind == "above_start" and hit.step == 6 and hit.fix == "lower it"
    assert hit.start_loss == start and "1.5x" in hit.reason
    # the median of the last three is just under 1.5x: one spike is not enough
    assert detect_divergence(curve([start, 1.9, 2.1, 2.9, 2.95, 9.0])) is None
    assert DIVERGE_FACTOR == 1.5
    # one easy first batch does not set the bar: the start is the median of the first three when higher
    assert detect_divergence(curve([1.0, 2.0, 2.1, 2.2, 2.3, 2.1])) is None


def test_loss_rising_over_a_window_trigger_and_near_miss():
    assert (RISE_WINDOW, RISE_FACTOR) == (10, 1.3)
    base = [3.0, 2.0, 1.5, 1.2, 1.0, 1.0, 1.0, 1.0, 1.0]
    hit = detect_divergence(curve(base + [1.3, 1.3, 1.3, 1.3, 1.35]))
    assert hit is not None and hit.kind == "rising" and "above the 5 before" in hit.reason
    assert detect_divergence(curve(base + [1.25, 1.25, 1.25, 1.25, 1.25])) is None  # 25 % < 30 %


def test_small_losses_need_a_real_rise():
    # already-learned data: 0.05 -> 0.09 is 1.8x but 0.04 nats, noise
    assert detect_divergence(curve([0.05, 0.05, 0.05, 0.09, 0.09, 0.09])) is None
    assert detect_divergence(curve([0.2] * 5 + [0.06] * 5 + [0.1] * 5)) is None


def test_the_event_reads_as_a_warning_with_its_fix():
    hit = detect_divergence(curve([2.0, 2.0, 2.0, 4.0, 4.0, 4.0]), fix="lower training.learning_rate")
    text = describe_event({"kind": "system", **hit.to_event()})
    assert text.startswith("WARNING: the loss is diverging") and "lower training.learning_rate" in text


def test_stop_on_divergence_is_a_validated_commented_field(tmp_path):
    from ftwizard.config import RunConfig, commented_yaml, starting_config
    from ftwizard.errors import UserError
    from ftwizard.config import config_from_dict

    cfg = starting_config()
    assert cfg.training.stop_on_divergence is False
    text = commented_yaml(cfg)
    assert "stop_on_divergence: false" in text and "diverges" in text
    with pytest.raises(UserError):
        config_from_dict({"data": {"train": str(cfg.data.train)}, "training": {"stop_on_divergence": "maybe"}})
    assert isinstance(cfg, RunConfig)


@pytest.mark.slow
def test_a_real_run_at_a_huge_learning_rate_is_caught_and_stopped(tmp_path):
    path = tiny_config(tmp_path, learning_rate=0.5, max_steps=10, save_every=0, stop_on_divergence=True)
    env_cli = [sys.executable, "-m", "ftwizard"]
    r = subprocess.run(env_cli + ["train", str(path), "--name", "hot"], capture_output=True, text=True, timeout=900,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "WARNING: the loss is diverging" in r.stdout and "learning_rate" in r.stdout
    run = tmp_path / "runs" / "hot"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    div = [e for e in events if e.get("event") == "divergence"]
    assert len(div) == 1 and div[0]["stopping"] is True
    step = div[0]["step"]
    assert step < 10 and (run / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").is_file()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and "diverged" in status["message"] and "learning_rate" in status["message"]
    # the gate ran on this start, and preflight.json says what it already warned about
    pre = json.loads((run / "preflight.json").read_text())
    assert "lr.range" in {f["rule"] for f in pre["findings"]}
    # monitor --plain and runs show it
    mon = subprocess.run(env_cli + ["monitor", str(run), "--plain", "--no-follow"], capture_output=True, text=True,
                         timeout=120)
    assert "the loss is diverging" in mon.stdout
    runs = subprocess.run(env_cli + ["runs", "--runs-dir", str(tmp_path / "runs"), "--json"], capture_output=True,
                          text=True, timeout=120)
    row = [x for x in json.loads(runs.stdout) if x["name"] == "hot"][0]
    assert row["divergence"]["step"] == step
    table = subprocess.run(env_cli + ["runs", "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True,
                           timeout=120)
    assert "diverged" in table.stdout
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == 0.5  # the config is never touched
