"""The distributed launch path without training: the torchrun call, the per-node commands,
refusals before anything starts, and how a torchrun failure becomes one line naming a rank."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ftwizard.errors import UserError
from ftwizard.training import distributed as dist
from ftwizard.training.distributed import LaunchSpec

from helpers import tiny_config

# torchrun's summary when rank 1 was SIGKILLed and torchrun then stopped rank 0 (torch 2.13, abridged)
TORCHRUN_SUMMARY = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
======================================================
ftwizard.training.worker FAILED
------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-23_19:35:45
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 7576)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 7576
------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-23_19:35:44
  host      : gpu-node-3
  rank      : 5 (local_rank: 1)
  exitcode  : -9 (pid: 7577)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 7577
======================================================
"""


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ftwizard", *args], capture_output=True, text=True, timeout=120)


def test_single_node_uses_a_free_port_and_the_worker_in_rank_mode(tmp_path):
    cmd = dist.torchrun_command(LaunchSpec(gpus=4), tmp_path / "run", python="python")
    assert cmd[:3] == ["python", "-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc-per-node") + 1] == "4" and "--standalone" in cmd
    assert cmd[cmd.index("--max-restarts") + 1] == "0"  # a failed rank fails the run; no silent restart
    assert cmd[cmd.index("-m", 3) + 1:] == ["ftwizard.training.worker", str(tmp_path / "run"), "--rank"]
    resumed = dist.torchrun_command(LaunchSpec(gpus=4), tmp_path / "run", resume=True)
    assert resumed[-2:] == ["--rank", "--resume"]


def test_multi_node_command_carries_rendezvous(tmp_path):
    spec = LaunchSpec(gpus=8, nodes=2, node_rank=1, master_addr="10.0.0.5", master_port=29611)
    cmd = dist.torchrun_command(spec, tmp_path)
    for flag, value in (("--nnodes", "2"), ("--node-rank", "1"), ("--master-addr", "10.0.0.5"),
                        ("--master-port", "29611"), ("--nproc-per-node", "8")):
        assert cmd[cmd.index(flag) + 1] == value
    assert "--standalone" not in cmd and spec.world_size == 16


def test_launch_commands_one_per_node_differing_only_in_node_rank():
    cmds = dist.launch_commands("cfg.yaml", gpus=8, nodes=3, strategy="fsdp", master_addr="h0", master_port=29555,
                                name="big")
    assert len(cmds) == 3
    for rank, c in enumerate(cmds):
        argv = shlex.split(c)
        assert argv[:3] == ["ftwizard", "train", "cfg.yaml"]
        assert argv[argv.index("--node-rank") + 1] == str(rank)
        assert argv[argv.index("--strategy") + 1] == "fsdp" and argv[argv.index("--name") + 1] == "big"
    assert cmds[0].replace("--node-rank 0", "") == cmds[2].replace("--node-rank 2", "")
    single = dist.launch_commands("cfg.yaml", gpus=2)
    assert single == ["ftwizard train cfg.yaml --gpus 2 --strategy ddp"]
    unnamed = dist.launch_commands("cfg.yaml", gpus=1, nodes=2, master_addr="h0")
    assert len({shlex.split(c)[shlex.split(c).index("--name") + 1] for c in unnamed}) == 1  # one shared name


def test_print_launch_prints_every_node_and_starts_nothing(tmp_path):
    cfg = tiny_config(tmp_path)
    r = cli("train", str(cfg), "--print-launch", "--gpus", "4", "--nodes", "2", "--master-addr", "10.1.1.1",
            "--name", "two")
    assert r.returncode == 0, r.stderr
    assert "node 0:" in r.stdout and "node 1:" in r.stdout and "--node-rank 1" in r.stdout
    assert "torch.distributed.run" in r.stdout and "8 process(es)" in r.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("spec, kwargs, needle", [
    (LaunchSpec(nodes=2, node_rank=0), {"name": "x"}, "--master-addr"),
    (LaunchSpec(nodes=2, master_addr="h"), {}, "--name"),
    (LaunchSpec(nodes=2, node_rank=2, master_addr="h"), {"name": "x"}, "outside 0..1"),
    (LaunchSpec(gpus=0), {}, "at least 1"),
    (LaunchSpec(gpus=4), {"visible_gpus": 2}, "2 visible GPU"),
    (LaunchSpec(gpus=2, strategy="fsdp"), {"visible_gpus": 0}, "FSDP needs GPUs"),
    (LaunchSpec(gpus=2, strategy="fsdp"), {"method": "qlora", "device": "cpu", "visible_gpus": 2}, "FSDP needs GPUs"),
])
def test_impossible_launches_are_refused_with_a_fix(spec, kwargs, needle):
    method = kwargs.pop("method", "lora")
    with pytest.raises(UserError) as err:
        dist.check_spec(spec, method, **kwargs)
    assert needle in err.value.what + (err.value.fix or "")


def test_fsdp_and_ddp_are_allowed_where_they_can_run():
    dist.check_spec(LaunchSpec(gpus=2, strategy="fsdp"), "qlora", visible_gpus=2)
    dist.check_spec(LaunchSpec(gpus=2, strategy="ddp"), "qlora", visible_gpus=0)  # gloo DDP on CPU processes
    dist.check_spec(LaunchSpec(gpus=8, strategy="ddp"), "full", device="cpu", visible_gpus=2)  # CPU by choice


@pytest.mark.skipif(dist.visible_gpu_count() > 0, reason="this machine has GPUs")
def test_cli_refuses_fsdp_on_a_machine_without_gpus(tmp_path):
    cfg = tiny_config(tmp_path)
    r = cli("train", str(cfg), "--gpus", "2", "--strategy", "fsdp", "--name", "f", "--force")
    assert r.returncode == 2 and "FSDP needs GPUs" in r.stderr and "--strategy ddp" in r.stderr
    assert not (tmp_path / "runs" / "f").exists()


def test_cli_refuses_bad_node_rank_before_any_folder(tmp_path):
    cfg = tiny_config(tmp_path)
    r = cli("train", str(cfg), "--gpus", "1", "--nodes", "2", "--node-rank", "5", "--master-addr", "h", "--name", "z",
            "--force")
    assert r.returncode == 2 and "outside 0..1" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs" / "z").exists()


def test_torchrun_summary_names_the_root_cause_rank():
    assert dist.parse_torchrun_failure(TORCHRUN_SUMMARY) == {
        "rank": 5, "local_rank": 1, "exitcode": -9, "host": "gpu-node-3",
        "detail": "Signal 9 (SIGKILL) received by PID 7577"}
    assert dist.parse_torchrun_failure("RuntimeError: something else") is None


def test_failure_message_prefers_the_ranks_own_words(tmp_path):
    spec = LaunchSpec(gpus=4, nodes=2, master_addr="h")
    rank, msg = dist.failure_message(spec, tmp_path, 1, TORCHRUN_SUMMARY)
    assert rank == 5 and msg.startswith("rank 5 (node 0, gpu-node-3): the process was killed by SIGKILL")
    dist.write_rank_file(tmp_path, 5, state="failed", message="ValueError: bad shard")
    dist.write_rank_file(tmp_path, 0, state="failed", message="RuntimeError: Connection closed by peer")
    rank, msg = dist.failure_message(spec, tmp_path, 1, TORCHRUN_SUMMARY)
    assert rank == 5 and "ValueError: bad shard" in msg
    # no summary (torchrun itself went away): the earliest rank that reported
    rank, msg = dist.failure_message(LaunchSpec(gpus=2), tmp_path, 1, "killed")
    assert rank == 5 and msg == "rank 5: ValueError: bad shard"
    rank, msg = dist.failure_message(LaunchSpec(gpus=2), tmp_path / "none", 1, "torchrun: error: bad flag\n")
    assert rank is None and "bad flag" in msg


def test_spec_round_trips_through_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FTWIZARD_DIST_TIMEOUT", "45")
    ns = type("A", (), dict(gpus=2, strategy="fsdp", nodes=None, node_rank=None, master_addr=None,
                            master_port=None))()
    spec = dist.spec_from_args(ns)
    assert (spec.gpus, spec.strategy, spec.nodes, spec.timeout_s) == (2, "fsdp", 1, 45)
    spec.save(tmp_path)
    assert json.loads((tmp_path / "launch.json").read_text())["gpus"] == 2
    again = dist.spec_from_args(type("A", (), dict(gpus=4, strategy=None, nodes=None, node_rank=None,
                                                   master_addr=None, master_port=None))(),
                                base=LaunchSpec.load(tmp_path))
    assert (again.gpus, again.strategy) == (4, "fsdp")
    none = type("A", (), dict(gpus=None, strategy=None, nodes=None, node_rank=None, master_addr=None,
                              master_port=None))()
    assert dist.spec_from_args(none) is None and LaunchSpec.load(tmp_path / "nothing") is None


def test_distributed_module_is_light():
    code = "import sys, ftwizard.training.distributed; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr
