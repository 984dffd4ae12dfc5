"""Real 2-process training on the CPU (gloo) through `ftwizard train --gpus 2`: DDP LoRA,
a rank killed mid-run, and two "nodes" on localhost. Slow: each run starts two trainers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from ftwizard.rundir import FINAL_STATES, RunDir, latest_by_step

from helpers import tiny_config

pytestmark = pytest.mark.slow

# One thread per process (two ranks share two cores), and a short process-group timeout.
ENV = dict(os.environ, OMP_NUM_THREADS="1", FTWIZARD_DIST_TIMEOUT="60", HF_HUB_OFFLINE="1")


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def wait_for(pred, timeout=600.0, every=0.2):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def final_status(run: RunDir, timeout=600.0) -> dict:
    return wait_for(lambda: run.status() if run.status().get("state") in FINAL_STATES else None, timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_processes(supervisor_pid: int) -> dict[int, psutil.Process]:
    out = {}
    for child in psutil.Process(supervisor_pid).children(recursive=True):
        try:
            if "--rank" in child.cmdline():
                out[int(child.environ()["RANK"])] = child
        except (psutil.Error, KeyError, ValueError):
            continue
    return out


def test_ddp_two_processes_train_lora_with_one_stream_and_global_tokens(tmp_path):
    cfg = tiny_config(tmp_path, "lora", max_steps=3, save_every=2)
    r = cli("train", str(cfg), "--name", "ddp", "--gpus", "2", "--force")
    run = RunDir(tmp_path / "runs" / "ddp")
    assert r.returncode == 0, r.stderr + run.log.read_text()[-3000:]
    st = run.status()
    assert st["state"] == "completed" and st["step"] == 3 and st["world_size"] == 2, st
    events = list(run.iter_events())
    train = [e for e in events if e["kind"] == "train"]
    assert [e["step"] for e in train] == [1, 2, 3]  # one stream: rank 1 wrote nothing
    assert len([e for e in events if e.get("event") == "train_begin"]) == 1
    assert train[-1]["loss"] < 0.6 * train[0]["loss"], [e["loss"] for e in train]
    # 2 ranks x 4 rows per step: step 2 ends the first epoch of 16 rows, so the token count
    # is the whole file's (a per-rank count would be half of it)
    data = next(e for e in events if e.get("event") == "data")
    assert train[1]["epoch"] == 1.0 and train[1]["tokens"] == data["train_tokens"]
    assert train[2]["tokens_per_second"] > 0 and train[2]["memory_gb"] > 0
    # one adapter, saved once; both ranks' RNG states in the checkpoint (so resume is exact)
    assert (run.adapter / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in run.path.rglob("adapter_model.safetensors")) == ["adapter_model.safetensors"] * 3
    ck = run.checkpoints / "checkpoint-2"
    assert (ck / "rng_state_0.pth").is_file() and (ck / "rng_state_1.pth").is_file()
    assert "Traceback" not in r.stderr


def test_a_killed_rank_fails_the_run_naming_it_within_bounded_time(tmp_path):
    cfg = tiny_config(tmp_path, "lora", max_steps=500, save_every=0)
    r = cli("train", str(cfg), "--name", "kill", "--gpus", "2", "--detach", "--json", "--force")
    assert r.returncode == 0, r.stderr
    run = RunDir(json.loads(r.stdout)["path"])
    wait_for(lambda: any(e["kind"] == "train" for e in run.iter_events()))
    ranks = rank_processes(run.status()["pid"])
    assert sorted(ranks) == [0, 1]
    ranks[1].send_signal(signal.SIGKILL)
    t0 = time.time()
    st = final_status(run, timeout=120)
    assert time.time() - t0 < 90  # torchrun notices within a second; generous for a loaded CPU
    assert st["state"] == "failed" and st["failed_rank"] == 1, st
    assert st["message"].startswith("rank 1: the process was killed by SIGKILL"), st["message"]
    failed = [e for e in run.iter_events() if e.get("event") == "failed"]
    assert len(failed) == 1 and failed[0]["rank"] == 1
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ranks.values()),
             timeout=60)  # no rank outlives the run


def test_two_nodes_on_localhost_complete(tmp_path):
    cfg = tiny_config(tmp_path, "lora", max_steps=2, save_every=0)
    port = str(free_port())
    common = ["--name", "two", "--gpus", "1", "--nodes", "2", "--master-addr", "127.0.0.1", "--master-port", port,
              "--detach", "--json", "--force"]
    started = [cli("train", str(cfg), *common, "--node-rank", str(rank)) for rank in (0, 1)]
    for r in started:
        assert r.returncode == 0, r.stderr
    node0, node1 = (RunDir(json.loads(r.stdout)["path"]) for r in started)
    assert node1.name == "two-node1"
    st0, st1 = final_status(node0, 900), final_status(node1, 120)
    assert st0["state"] == "completed" and st0["world_size"] == 2, (st0, node0.log.read_text()[-3000:])
    assert st1["state"] == "completed" and "node 1 of 2" in st1["message"], st1
    assert [e["step"] for e in latest_by_step(list(node0.iter_events()))] == [1, 2]
    assert not [e for e in node1.iter_events() if e["kind"] == "train"]  # only global rank 0 reports
    assert (node0.adapter / "adapter_model.safetensors").is_file() and not node1.adapter.exists()


def test_stop_reaches_every_rank_and_resume_continues_from_the_shared_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, "lora", max_steps=4, save_every=100)
    r = cli("train", str(cfg), "--name", "sr", "--gpus", "2", "--detach", "--json", "--force")
    assert r.returncode == 0, r.stderr
    run = RunDir(json.loads(r.stdout)["path"])
    wait_for(lambda: any(e["kind"] == "train" for e in run.iter_events()))
    assert cli("stop", str(run.path), "--wait").returncode == 0  # the STOP file; ranks agree on the step
    st = run.status()
    assert st["state"] == "stopped", st
    stopped_at = st["step"]
    assert run.last_checkpoint().name == f"checkpoint-{stopped_at}"
    r = cli("resume", str(run.path))  # relaunches with the saved launch.json: 2 processes again
    assert r.returncode == 0, r.stderr + run.log.read_text()[-3000:]
    assert run.status()["state"] == "completed" and run.status()["world_size"] == 2
    resumed = [e for e in run.iter_events() if e.get("event") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] == stopped_at
    assert [e["step"] for e in latest_by_step(list(run.iter_events()))] == [1, 2, 3, 4]
