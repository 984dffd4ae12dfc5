"""Several processes, GPUs and machines: launch through torchrun, supervise, report.

Light (stdlib only at import): the CLI and the wizard import it.

How a distributed run is laid out:
- `launch.json` in the run folder holds the `LaunchSpec` (processes per node, nodes,
  node rank, rendezvous, DDP or FSDP). Its presence makes the trainer process a
  *supervisor*: it keeps the lock, the status pid and the STOP handling, and starts
  `python -m torch.distributed.run ... -m ftwizard.training.worker RUN --rank`.
- The engine stays the Hugging Face one: torchrun starts the ranks, the Trainer's
  accelerate state joins the process group (gloo on CPU, NCCL on GPU) and wraps the
  model in DDP or FSDP2 (from `fsdp_config`). Nothing here moves tensors.
- Global rank 0 alone writes events.jsonl, the running status and checkpoints. Every
  rank that fails writes `ranks/rank-<R>.json`; the supervisor reads those and
  torchrun's error summary ("Root Cause") and ends the run as failed, naming the rank.
  torchrun tears the other ranks down as soon as one dies; `timeout_s` is the process
  group timeout, so a peer lost on another machine ends in an error, not a hang.
- A node other than 0 gets its own folder `<name>-node<R>` (its log and its status);
  node 0's folder holds the events, the checkpoints and the result.

We use torchrun rather than `accelerate launch`: the ranks read their settings from
the TrainingArguments (which build accelerate's DDP/FSDP plugin), so accelerate's
launcher would only translate flags into the same torchrun call; torchrun gives the
per-rank error summary we parse.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ftwizard.errors import UsageError, UserError

STRATEGIES = ("ddp", "fsdp")
LAUNCH_FILE = "launch.json"
RANKS_DIR = "ranks"
DEFAULT_PORT = 29500
DEFAULT_TIMEOUT_S = 900  # process-group timeout: long enough for a big checkpoint, short enough to not hang a night


@dataclass
class LaunchSpec:
    """How one node launches its share of a run."""

    gpus: int = 1                 # processes on this node (one per GPU; CPU processes on a machine without one)
    strategy: str = "ddp"         # ddp: every rank holds the whole model; fsdp: parameters, grads, optimizer sharded
    nodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None  # node 0's address; needed with nodes > 1
    master_port: int = DEFAULT_PORT
    timeout_s: int = DEFAULT_TIMEOUT_S

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LaunchSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, run_path: Path) -> None:
        from ftwizard.fileio import atomic_write_text

        atomic_write_text(Path(run_path) / LAUNCH_FILE, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, run_path: Path) -> "LaunchSpec | None":
        p = Path(run_path) / LAUNCH_FILE
        if not p.is_file():
            return None
        return cls.from_dict(json.loads(p.read_text()))


def spec_from_args(args, base: LaunchSpec | None = None) -> LaunchSpec | None:
    """The spec asked for on the command line (None: a plain single-process run)."""
    given = {k: getattr(args, k, None) for k in ("gpus", "strategy", "nodes", "node_rank", "master_addr", "master_port")}
    if base is None and all(v is None for v in given.values()):
        return None
    spec = LaunchSpec(**(base.to_dict() if base else {}))
    for k, v in given.items():
        if v is not None:
            setattr(spec, k, v)
    if os.environ.get("FTWIZARD_DIST_TIMEOUT"):
        spec.timeout_s = int(os.environ["FTWIZARD_DIST_TIMEOUT"])
    return spec


def check_spec(spec: LaunchSpec, method: str, device: str = "auto", name: str | None = None,
               visible_gpus: int | None = None) -> None:
    """Refuse, before anything starts, a launch that cannot work; every message says what to change."""
    if spec.strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {spec.strategy!r}", where="--strategy", fix="use ddp or fsdp")
    if spec.gpus < 1:
        raise UsageError("--gpus must be at least 1", where="--gpus")
    if spec.nodes < 1:
        raise UsageError("--nodes must be at least 1", where="--nodes")
    if not 0 <= spec.node_rank < spec.nodes:
        raise UsageError(f"--node-rank {spec.node_rank} is outside 0..{spec.nodes - 1}", where="--node-rank",
                        fix="number the machines 0, 1, ... with node 0 the one named by --master-addr")
    if not 1 <= spec.master_port <= 65535:
        raise UsageError(f"--master-port {spec.master_port} is not a TCP port", where="--master-port")
    if spec.nodes > 1:
        if not spec.master_addr:
            raise UsageError("several nodes need --master-addr (the address of node 0, reachable from every node)",
                            where="--master-addr", fix="pass --master-addr HOST; `--print-launch` prints each node's command")
        if not name:
            raise UsageError("several nodes need --name, so every node agrees on the run's name",
                            where="--name", fix="pass the same --name on every node")
    if visible_gpus is not None and device != "cpu" and visible_gpus > 0 and spec.gpus > visible_gpus:
        raise UsageError(f"--gpus {spec.gpus} but this machine has {visible_gpus} visible GPU(s)", where="--gpus",
                        fix=f"use --gpus {visible_gpus} or fewer (`ftwizard gpus` lists them)")
    on_gpu = device != "cpu" and bool(visible_gpus)
    if spec.strategy == "fsdp" and not on_gpu:
        # accelerate turns FSDP on only for GPU-type devices; CPU processes would silently run DDP
        raise UsageError("FSDP needs GPUs: accelerate shards a model only across GPUs",
                        where="--strategy", fix="on the CPU use --strategy ddp (each process holds the whole model)"
                        + (" and method lora" if method == "qlora" else ""))


def visible_gpu_count() -> int:
    """GPUs this machine shows, through NVML (no torch import); 0 when there is no driver."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            n = pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd:
        return min(n, len([d for d in cvd.split(",") if d.strip()]))
    return n


# ---- commands ----------------------------------------------------------------
def torchrun_command(spec: LaunchSpec, run_path: Path, resume: bool = False, python: str | None = None) -> list[str]:
    """The torchrun call that starts this node's ranks of the run in `run_path`."""
    cmd = [python or sys.executable, "-m", "torch.distributed.run",
           "--nproc-per-node", str(spec.gpus), "--max-restarts", "0", "--monitor-interval", "0.5"]
    if spec.nodes == 1 and not spec.master_addr:
        cmd += ["--standalone"]  # a free local port: runs side by side never collide
    else:
        cmd += ["--nnodes", str(spec.nodes), "--node-rank", str(spec.node_rank),
                "--master-addr", spec.master_addr or "127.0.0.1", "--master-port", str(spec.master_port)]
    cmd += ["-m", "ftwizard.training.worker", str(run_path), "--rank"]
    return cmd + (["--resume"] if resume else [])


def launch_commands(config_path: str | Path, gpus: int, nodes: int = 1, strategy: str = "ddp",
                    master_addr: str | None = None, master_port: int = DEFAULT_PORT, name: str | None = None,
                    extra: list[str] | None = None) -> list[str]:
    """The `ftwizard train` command to run on each node, node 0 first (what --print-launch and the wizard show)."""
    if nodes > 1 and not name:
        name = "dist-" + time.strftime("%Y%m%d-%H%M%S")
    out = []
    for rank in range(nodes):
        parts = ["ftwizard", "train", str(config_path)] + (["--name", name] if name else [])
        parts += ["--gpus", str(gpus), "--strategy", strategy]
        if nodes > 1:
            parts += ["--nodes", str(nodes), "--node-rank", str(rank),
                      "--master-addr", master_addr or "NODE0_ADDRESS", "--master-port", str(master_port)]
        out.append(shlex.join(parts + list(extra or [])))
    return out


def describe_launch(spec: LaunchSpec, config_path: str | Path, name: str | None, run_path_hint: str) -> str:
    """Text for --print-launch: the command per node and, for reference, the torchrun call it makes."""
    cmds = launch_commands(config_path, spec.gpus, spec.nodes, spec.strategy, spec.master_addr, spec.master_port,
                           name)
    lines = [f"# {spec.world_size} process(es): {spec.nodes} node(s) x {spec.gpus}, strategy {spec.strategy}"]
    if spec.nodes > 1:
        lines.append("# run each line on its machine (same config, data paths and software on each);")
        lines.append("# node 0 keeps the run folder with events, checkpoints and the result")
    for rank, c in enumerate(cmds):
        lines.append(f"node {rank}:  {c}" if spec.nodes > 1 else c)
    node0 = LaunchSpec(**dict(spec.to_dict(), node_rank=0))
    lines.append("# which starts, on node 0:")
    lines.append("#   " + shlex.join(torchrun_command(node0, Path(run_path_hint), python="python")))
    return "\n".join(lines)


def node_run_name(name: str, node_rank: int) -> str:
    return name if node_rank == 0 else f"{name}-node{node_rank}"


# ---- supervision ----------------------------------------------------------------
_ROOT = re.compile(r"Root Cause \(first observed failure\):(.*?)(?:={10,}|\Z)", re.S)
_RANK = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)")
_EXIT = re.compile(r"exitcode\s*:\s*(-?\d+)")
_TB = re.compile(r"traceback\s*:\s*(.+)")
_HOST = re.compile(r"host\s*:\s*(\S+)")


def parse_torchrun_failure(text: str) -> dict[str, Any] | None:
    """The first failed rank from torchrun's ChildFailedError summary: rank, exit code, host, detail."""
    m = _ROOT.search(text)
    if not m:
        return None
    block = m.group(1)
    out: dict[str, Any] = {}
    if r := _RANK.search(block):
        out["rank"], out["local_rank"] = int(r.group(1)), int(r.group(2))
    if e := _EXIT.search(block):
        out["exitcode"] = int(e.group(1))
    if h := _HOST.search(block):
        out["host"] = h.group(1)
    if t := _TB.search(block):
        out["detail"] = t.group(1).strip()
    return out or None


def rank_failure_path(run_path: Path, rank: int) -> Path:
    return Path(run_path) / RANKS_DIR / f"rank-{rank}.json"


def write_rank_file(run_path: Path, rank: int, **data: Any) -> None:
    from ftwizard.fileio import atomic_write_text

    p = rank_failure_path(run_path, rank)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(dict(data, rank=rank, time=time.time())) + "\n")


def read_rank_files(run_path: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for p in (Path(run_path) / RANKS_DIR).glob("rank-*.json"):
        try:
            data = json.loads(p.read_text())
            out[int(data["rank"])] = data
        except (ValueError, KeyError, OSError):
            continue
    return out


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def failure_message(spec: LaunchSpec, run_path: Path, rc: int, output_tail: str) -> tuple[int | None, str]:
    """(rank, one line) for a failed torchrun: the root-cause rank, with its own message where it left one."""
    root = parse_torchrun_failure(output_tail) or {}
    files = {r: d for r, d in read_rank_files(run_path).items() if d.get("state") == "failed"}
    rank = root.get("rank")
    if rank is None and files:  # no summary (e.g. torchrun itself was stopped): the earliest rank to report
        rank = min(files, key=lambda r: files[r].get("time", 0))
    if rank is not None and rank in files:
        msg = files[rank]["message"]
    elif root.get("exitcode") is not None and root["exitcode"] < 0:
        msg = f"the process was killed by {_signal_name(root['exitcode'])}"
        if root["exitcode"] == -9:
            msg += " (out of memory, or killed by hand)"
    elif root.get("detail") and root["detail"] != "<N/A>":
        msg = root["detail"]
    elif root.get("exitcode") is not None:
        msg = f"the process exited with code {root['exitcode']}"
    else:
        tail = [ln for ln in output_tail.strip().splitlines() if ln.strip()][-1:] or [f"exit code {rc}"]
        msg = f"torchrun failed: {tail[0][:300]}"
    if rank is None:
        return None, msg
    where = f"rank {rank}"
    if spec.nodes > 1:
        where += f" (node {spec.node_rank}" + (f", {root['host']}" if root.get("host") else "") + ")"
        if re.search(r"connection|timed? ?out|closed|reset|peer", msg, re.I):
            msg += "; a process on another node may have failed first: see that node's log"
    return rank, f"{where}: {msg}"


def _child_setup() -> None:
    """In the torchrun child: its own process group (a terminal's Ctrl-C goes to us, not the ranks),
    and SIGTERM when the supervisor dies, so no rank outlives its supervisor."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def run_ranks(spec: LaunchSpec, run_path: Path, resume: bool, stop_requested, on_started=None,
              out=None) -> tuple[int, str]:
    """Start torchrun for this node and wait; returns (exit code, the last ~64 KB of its output).

    Output is copied line by line to `out` (the trainer log). While waiting, a stop
    request (signal to the supervisor) becomes the STOP file, which the ranks agree on."""
    out = out or sys.stdout
    env = dict(os.environ, PYTHONUNBUFFERED="1", FTWIZARD_DIST_TIMEOUT=str(spec.timeout_s),
               FTWIZARD_STRATEGY=spec.strategy)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, spec.gpus))))
    cmd = torchrun_command(spec, run_path, resume)
    print("launch: " + shlex.join(cmd), file=out, flush=True)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, cwd=str(run_path), preexec_fn=_child_setup)
    tail: deque[str] = deque(maxlen=2000)

    def pump() -> None:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            tail.append(line)
            out.write(line)
            out.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if on_started:
        on_started(proc)
    stop_file = Path(run_path) / "STOP"
    while proc.poll() is None:
        if stop_requested() and not stop_file.exists():
            stop_file.write_text(f"{time.time()}\n")
        time.sleep(0.25)
    reader.join(timeout=5)
    return proc.returncode, "".join(tail)
