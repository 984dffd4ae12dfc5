"""The GPU kit: every CUDA path of ftwizard in one command, within a time budget.

    python3 bench/gpu_kit.py OUT_DIR [--wheels .whl]        # on a GPU machine (docs/gpu.md)
    python3 bench/gpu_kit.py OUT_DIR --cpu-dry-run          # the same code, tiny shapes, on the CPU

Models are randomly initialised from configs (memory and speed do not depend on the
weights): the embedded model's own shape, a Llama-3.2-1B shape and a Llama-3.1-8B shape,
all with the embedded model's tokenizer (carried in .whl/tokenizer, or the local cache).
Parts, each stopped at its time budget (what it could not do is listed as skipped):

  1 gpus        `ftwizard gpus --json` and the NVML sampler against torch.cuda's figures
  2 train       `ftwizard train` (real launcher, pre-flight, trainer) on the sample data for each
                shape and method: tokens/s, peak memory (NVML, max_memory_reserved/allocated)
                against `ftwizard estimate` of the same config, error in %; plus the two
                calibration questions (checkpointed peak sum vs max; allocator + context share)
  4 eval_export `ftwizard eval` and `ftwizard export --format adapter,merged` on the embedded shape
  5 distributed 1-GPU `--gpus 1 --strategy ddp` and `fsdp`
  3 throughput  1B shape: a plain TRL script, ftwizard's default, and each speed-up on its own

Writes OUT_DIR/gpu_kit.json and OUT_DIR/gpu_kit.md after every part (a kill keeps what ran),
and OUT_DIR/logs.txt with the tail of every failed command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GIB = 1024**3

# Shapes (Hugging Face LlamaConfig fields). The embedded shape is read from the carried config.json.
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0)
LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False,
                max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0)
# --cpu-dry-run: the same runs on tiny shapes (the vocabulary must still hold the tokenizer's ids)
TINY = {
    "embedded": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, vocab_size=49152, tie_word_embeddings=True),
    "1b": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=24, vocab_size=49152, tie_word_embeddings=True),
    "8b": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=32, vocab_size=49152, tie_word_embeddings=False),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")

# (shape, method, settings) in priority order; 8B QLoRA is the estimator's headline case:
# 2048-token rows (packed sample data), micro-batch 1, gradient checkpointing.
TRAIN_RUNS = [
    ("embedded", "lora", {}), ("embedded", "qlora", {}), ("embedded", "full", {}),
    ("1b", "lora", {}), ("1b", "qlora", {}), ("8b", "qlora", {"long": True}),
    ("1b", "full", {}), ("8b", "lora", {"long": True}),
]
DRY_TRAIN_RUNS = [("embedded", "lora", {}), ("embedded", "qlora", {}), ("embedded", "full", {}),
                  ("1b", "lora", {}), ("8b", "qlora", {"long": True})]
PART_ORDER = ["gpus", "train", "eval_export", "distributed", "throughput"]
PART_NUMBER = {"gpus": 1, "train": 2, "throughput": 3, "eval_export": 4, "distributed": 5}
BUDGETS = {"gpus": 25, "train": 270, "eval_export": 60, "distributed": 60, "throughput": 75}  # seconds, GPU


class Kit:
    def __init__(self, out: Path, dry: bool, budget: float, work: Path, tokenizer: Path | None, liger: Path | None):
        self.out, self.dry, self.work = out, dry, work
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.liger = liger if liger and liger.is_dir() else None
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                        HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), self.env.get("PYTHONPATH", "")) if p)
        self.env.setdefault("FTWIZARD_CACHE", str(work / "cache"))
        self.tokenizer = tokenizer
        self.results: dict = {"schema": "ftwizard.gpu_kit/1", "mode": "cpu-dry-run" if dry else "gpu",
                              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "budget_s": budget,
                              "machine": machine_facts(), "parts": {}}
        self.runs: dict[str, dict] = {}  # run key -> facts (run dir, config) for later parts
        self.log = (out / "logs.txt").open("a")

    # ---- time ----------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def part(self, name: str):
        return Part(self, name)

    # ---- commands ------------------------------------------------------------
    def cmd(self, args: list[str], timeout: float, env: dict | None = None, sample_gpu: bool = False) -> dict:
        """Run one command with a timeout; returns rc, seconds, stdout, tail, nvml peak."""
        timeout = max(1.0, min(timeout, self.left()))
        sampler = GpuPeak() if (sample_gpu and not self.dry) else None
        t = time.monotonic()
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or self.env,
                             cwd=self.work)
        try:
            out, err = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            kill_tree(p.pid)  # the trainer is a child of the CLI: it must not live on holding the GPU
            out, err = p.communicate()
            rc = "timeout"
        secs = round(time.monotonic() - t, 1)
        peak = sampler.stop() if sampler else None
        tail = "\n".join((err or out or "").strip().splitlines()[-15:])
        if rc != 0:
            self.log.write(f"\n=== {' '.join(args)}\nrc={rc} after {secs}s\n{tail}\n")
            self.log.flush()
        return {"rc": rc, "seconds": secs, "stdout": out, "tail": tail, "nvml_peak_bytes": peak}

    def ftwizard(self, *args: str, timeout: float, env: dict | None = None, sample_gpu: bool = False) -> dict:
        return self.cmd([sys.executable, "-m", "ftwizard", *args], timeout, env, sample_gpu)

    # ---- models --------------------------------------------------------------
    def model_dir(self, shape: str) -> Path:
        """A randomly initialised model folder for a shape, with the embedded tokenizer."""
        d = self.work / "models" / shape
        if (d / "model.safetensors.index.json").exists() or (d / "model.safetensors").exists():
            return d
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig

        tok = self.tokenizer
        emb = json.loads((tok / "config.json").read_text())
        if self.dry:
            fields = dict(TINY[shape])
        elif shape == "embedded":
            fields = {k: v for k, v in emb.items() if not k.startswith("_") and k not in ("architectures", "dtype", "transformers_version")}
        else:
            fields = dict(LLAMA_1B if shape == "1b" else LLAMA_8B)
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            fields.setdefault(k, emb.get(k))
        cfg = LlamaConfig(**fields)
        torch.manual_seed(0)
        dev = "cuda" if torch.cuda.is_available() and not self.dry else "cpu"
        dtype = torch.bfloat16 if dev == "cuda" else torch.float32
        with torch.device(dev):
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        tmp = d.with_name(d.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, max_shard_size="5GB")
        del model
        if dev == "cuda":
            torch.cuda.empty_cache()
        for f in TOKENIZER_FILES:
            if (tok / f).exists():
                shutil.copy2(tok / f, tmp / f)
        tmp.rename(d)
        return d

    def write_config(self, key: str, base: Path, method: str, *, steps: int, batch: int, max_length: int,
                     checkpointing: bool, packing: bool = False, eval_file: bool = False, **data) -> Path:
        import yaml

        cfg = {"name": key, "runs_dir": str(self.work / "runs"),
               "model": {"base": str(base), "method": method},
               "data": {"train": str(REPO / "sample_data" / "train.jsonl"), "max_length": max_length,
                        "packing": packing, **data},
               "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
               "training": {"learning_rate": 1e-5 if method == "full" else 1e-4, "max_steps": steps,
                            "batch_size": batch, "gradient_accumulation": 1, "warmup_ratio": 0.0,
                            "scheduler": "constant", "eval_every": 0, "save_every": 0, "log_every": 1,
                            "gradient_checkpointing": checkpointing, "seed": 0}}
        if eval_file:
            cfg["data"]["eval"] = str(REPO / "sample_data" / "eval.jsonl")
        path = self.work / "configs" / f"{key}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def train(self, key: str, config: Path, *extra: str, timeout: float, env: dict | None = None) -> dict:
        """`ftwizard train` in the foreground; facts read back from the run's events."""
        run_dir = self.work / "runs" / key
        shutil.rmtree(run_dir, ignore_errors=True)
        r = self.ftwizard("train", str(config), "--force", *extra, timeout=timeout, env=env, sample_gpu=True)
        row = {"run": key, "rc": r["rc"], "seconds": r["seconds"]}
        row.update(read_events(run_dir))
        if r["nvml_peak_bytes"] is not None:
            row["nvml_peak_bytes"] = r["nvml_peak_bytes"]
        if r["rc"] != 0:
            lines = [ln.strip() for ln in r["tail"].splitlines() if ln.strip()]
            row["error"] = " / ".join(lines[-3:]) if lines else f"exit {r['rc']}"
        self.runs[key] = {"dir": run_dir, "config": config, "ok": r["rc"] == 0}
        return row

    def estimate(self, config: Path) -> dict:
        r = self.ftwizard("estimate", str(config), "--json", timeout=180 if self.dry else 90)
        try:
            e = json.loads(r["stdout"])
        except (ValueError, TypeError):
            return {"estimate_error": r["tail"].splitlines()[-1] if r["tail"] else "no output"}
        out = {"estimate_bytes": e["total_bytes"], "estimate_parts": e["parts"], "estimate_phase": e["peak_phase"]}
        out.update(calibration_variants(config))
        return out

    # ---- output --------------------------------------------------------------
    def save(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        (self.out / "gpu_kit.json").write_text(json.dumps(self.results, indent=2, default=str))
        (self.out / "gpu_kit.md").write_text(markdown(self.results))


class Part:
    """One part: its own budget, rows, and a list of what it skipped."""

    def __init__(self, kit: Kit, name: str):
        self.kit, self.name = kit, name
        budget = BUDGETS[name] * (6 if kit.dry else 1)  # a CPU is slow, and CI boxes are shared
        self.deadline = min(kit.deadline, time.monotonic() + budget)
        self.rec = {"number": PART_NUMBER[name], "status": "running", "budget_s": budget, "rows": [], "skipped": [],
                    "notes": []}
        kit.results["parts"][name] = self.rec
        self.t = time.monotonic()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def room(self, need: float, what: str) -> bool:
        """True when `need` seconds are left; else records `what` as skipped."""
        if self.left() >= need:
            return True
        self.rec["skipped"].append(f"{what} (needs ~{need:.0f} s, {max(0, self.left()):.0f} s left)")
        return False

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if ev is not None:
            import traceback

            self.rec["status"] = "failed"
            self.rec["error"] = f"{et.__name__}: {ev}"
            self.kit.log.write(f"\n=== part {self.name} crashed\n{traceback.format_exc()}\n")
        elif self.rec["status"] == "running":
            bad = [r for r in self.rec["rows"] if r.get("rc") not in (0, None, "expected")]
            self.rec["status"] = "partial" if (self.rec["skipped"] or bad) else "done"
        self.rec["seconds"] = round(time.monotonic() - self.t, 1)
        self.kit.save()
        return True  # one broken part never stops the others


# ---- helpers -----------------------------------------------------------------
def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def kill_tree(pid: int) -> None:
    """SIGTERM a process and all its descendants, then SIGKILL what is left after 10 s."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for q in procs:
        try:
            q.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for q in alive:
        try:
            q.kill()
        except psutil.NoSuchProcess:
            pass


def machine_facts() -> dict:
    facts = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        facts["load"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "liger_kernel",
                 "flash_attn", "pydantic"):
        try:
            from importlib.metadata import version

            facts[name] = version(name.replace("_", "-"))
        except Exception:
            facts[name] = None
    try:
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
            facts["cuda"] = torch.version.cuda
            facts["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        facts["torch_error"] = str(e)
    return facts


class GpuPeak:
    """Samples GPU 0's used memory (NVML) in a thread; stop() returns the peak above the start."""

    def __init__(self, every: float = 0.05):
        from ftwizard.hardware.gpus import Sampler

        self.s = Sampler()
        self.base = self._used()
        self.peak = self.base
        self._stop = threading.Event()
        self.th = threading.Thread(target=self._loop, args=(every,), daemon=True)
        self.th.start()

    def _used(self) -> int:
        g = self.s.sample().gpus
        return int(g[0]["memory_used"]) if g else 0

    def _loop(self, every: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            time.sleep(every)

    def stop(self) -> int | None:
        self._stop.set()
        self.th.join(2)
        has = self.s.has_gpu
        self.s.close()
        return (self.peak - self.base) if has else None


def read_events(run_dir: Path) -> dict:
    """tokens/s (steady state: first step excluded), final loss, speed-ups and peak memory from events.jsonl."""
    out: dict = {}
    path = run_dir / "events.jsonl"
    if not path.exists():
        return out
    train = []
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        kind, ev = e.get("kind"), e.get("event")
        if kind == "train":
            train.append(e)
        elif ev == "speedups":
            out["speedups"] = {k: e.get(k) for k in ("padding_free", "liger", "attention")}
        elif ev == "memory_peak":
            out["max_memory_allocated"] = e.get("max_memory_allocated")
            out["max_memory_reserved"] = e.get("max_memory_reserved")
        elif ev == "data":
            out["train_tokens"] = e.get("train_tokens")
        elif ev == "engine":
            out["engine"] = {k: e.get(k) for k in ("distributed_type", "world_size", "backend", "fsdp_version")}
    if train:
        out["steps"] = train[-1].get("step")
        out["final_loss"] = train[-1].get("loss")
        out["first_loss"] = train[0].get("loss")
        tok = [(e.get("tokens"), e.get("elapsed_s")) for e in train if e.get("tokens") is not None]
        if len(tok) >= 3:  # steady state: from the end of step 1 to the last step
            (t0, s0), (t1, s1) = tok[0], tok[-1]
            if s1 > s0:
                out["tokens_per_s"] = round((t1 - t0) / (s1 - s0), 1)
        out["memory_gb_logged"] = max((e.get("memory_gb") or 0) for e in train)
    return out


def calibration_variants(config: Path) -> dict:
    """The estimate's allocated bytes (no allocator overhead, no CUDA context) under the two
    readings of the checkpointed backward peak; compared with max_memory_allocated."""
    from ftwizard.config import load_config
    from ftwizard.hardware import memory
    from ftwizard.hardware.estimate import estimate_for_config

    cfg = load_config(config)
    out = {}
    keep = memory.CALIBRATION["checkpointed_backward_peak"]
    try:
        for mode in ("sum", "max"):
            memory.CALIBRATION["checkpointed_backward_peak"] = mode
            e = estimate_for_config(cfg)
            out[f"estimate_allocated_{mode}"] = e.total_bytes - e.parts["allocator_overhead"] - e.parts["cuda_context"]
    except Exception as ex:  # noqa: BLE001 - reported in the row
        out["calibration_error"] = str(ex)
    finally:
        memory.CALIBRATION["checkpointed_backward_peak"] = keep
    return out


def pct(est, meas) -> float | None:
    if not est or not meas:
        return None
    return round(100.0 * (est - meas) / meas, 1)


def add_errors(row: dict) -> None:
    """Estimate error (%) against each measurement, and the two calibration figures."""
    est, parts = row.get("estimate_bytes"), row.get("estimate_parts") or {}
    if not est:
        return
    ctx, alloc_over = parts.get("cuda_context", 0), parts.get("allocator_overhead", 0)
    if row.get("nvml_peak_bytes"):
        row["error_vs_nvml_pct"] = pct(est, row["nvml_peak_bytes"])
    if row.get("max_memory_reserved"):
        row["error_vs_reserved_pct"] = pct(est - ctx, row["max_memory_reserved"])
    alloc = row.get("max_memory_allocated")
    if alloc:
        row["error_vs_allocated_pct"] = pct(est - ctx - alloc_over, alloc)
        for mode in ("sum", "max"):
            if row.get(f"estimate_allocated_{mode}"):
                row[f"ckpt_{mode}_error_pct"] = pct(row[f"estimate_allocated_{mode}"], alloc)
        if row.get("nvml_peak_bytes"):
            # what the estimate calls allocator overhead + CUDA context, as a share of allocated
            row["overhead_share_measured"] = round(row["nvml_peak_bytes"] / alloc - 1, 3)
            row["overhead_share_modelled"] = round((alloc_over + ctx) / max(1, est - ctx - alloc_over), 3)


# ---- parts -------------------------------------------------------------------
def part_gpus(kit: Kit) -> None:
    with kit.part("gpus") as p:
        r = kit.ftwizard("gpus", "--json", timeout=min(30, p.left()))
        row: dict = {"check": "ftwizard gpus --json", "rc": r["rc"], "seconds": r["seconds"]}
        try:
            g = json.loads(r["stdout"])
        except (ValueError, TypeError):
            g = None
            row["error"] = r["tail"]
        import torch

        cuda = torch.cuda.is_available() and not kit.dry
        if g is not None:
            row["gpus_reported"] = len(g.get("gpus") or [])
            row["message"] = g.get("message")
            if cuda and g.get("gpus"):
                nv = g["gpus"][0]
                props = torch.cuda.get_device_properties(0)
                row.update(name_nvml=nv.get("name"), name_torch=props.name,
                           total_nvml=nv.get("memory_total"), total_torch=props.total_memory,
                           total_diff_pct=pct(nv.get("memory_total"), props.total_memory),
                           names_agree=(props.name in str(nv.get("name"))) or (str(nv.get("name")) in props.name))
            elif not cuda:
                row["expected"] = "no GPU on this machine: NVML absent, CPU facts given"
                row["rc"] = 0 if r["rc"] == 0 and row["gpus_reported"] == 0 else r["rc"]
        p.rec["rows"].append(row)
        # The sampler the monitor uses, against torch's own count, around a 4 GiB allocation
        from ftwizard.hardware.gpus import Sampler

        s = Sampler()
        srow: dict = {"check": "NVML sampler vs torch.cuda", "has_gpu": s.has_gpu}
        if cuda and s.has_gpu:
            torch.cuda.synchronize()
            before = s.sample().gpus[0]["memory_used"]
            r0 = torch.cuda.memory_reserved()
            x = torch.empty(4 * GIB, dtype=torch.uint8, device="cuda")
            x.fill_(1)
            torch.cuda.synchronize()
            time.sleep(0.2)
            after = s.sample().gpus[0]["memory_used"]
            grew = torch.cuda.memory_reserved() - r0
            srow.update(nvml_delta=after - before, torch_reserved_delta=grew, diff_pct=pct(after - before, grew),
                        rc=0 if abs((after - before) - grew) < 0.02 * grew + 64 * 2**20 else "mismatch")
            del x
            torch.cuda.empty_cache()
        else:
            smp = s.sample()
            srow.update(rc=0 if not smp.gpus else "unexpected GPU", expected="CPU fallback (RSS, CPU %)",
                        rss=smp.process_rss)
        s.close()
        p.rec["rows"].append(srow)


def part_train(kit: Kit) -> None:
    runs = DRY_TRAIN_RUNS if kit.dry else TRAIN_RUNS
    if kit.liger and not kit.dry:
        runs = runs[:6] + [("8b", "qlora", {"long": True, "liger": True})] + runs[6:]
    with kit.part("train") as p:
        for shape, method, opt in runs:
            key = f"{shape}-{method}" + ("-liger" if opt.get("liger") else "")
            need = {"embedded": 20, "1b": 30, "8b": 70}[shape]
            if not (kit.work / "models" / shape).exists():
                need += {"embedded": 5, "1b": 10, "8b": 40}[shape]  # random init + save (16 GB for 8B)
            if not p.room(need, f"train {key}"):
                continue
            try:
                base = kit.model_dir(shape)
            except Exception as e:  # noqa: BLE001 - recorded, the next run may still work
                p.rec["rows"].append({"run": key, "rc": "model", "error": f"could not build the {shape} model: {e}"})
                continue
            long = opt.get("long")
            cfg = kit.write_config(key, base, method, steps=4 if kit.dry else (5 if long else 8),
                                   batch=1 if long else 4, max_length=(256 if kit.dry else 2048) if long else 512,
                                   checkpointing=bool(long), packing=bool(long))
            row = {"shape": shape, "method": method, "micro_batch": 1 if long else 4,
                   "seq": (256 if kit.dry else 2048) if long else 512, "checkpointing": bool(long),
                   "packing": bool(long)}
            row.update(kit.estimate(cfg))
            env = None
            if opt.get("liger"):
                env = dict(kit.env, PYTHONPATH=os.pathsep.join([str(kit.liger), kit.env["PYTHONPATH"]]))
            row.update(kit.train(key, cfg, timeout=p.left(), env=env))
            add_errors(row)
            p.rec["rows"].append(row)
            kit.save()
        rows = [r for r in p.rec["rows"] if r.get("max_memory_allocated")]
        if rows:
            def mean(k):
                xs = [abs(r[k]) for r in rows if r.get(k) is not None]
                return round(sum(xs) / len(xs), 1) if xs else None

            p.rec["calibration"] = {
                "checkpointed_peak_sum_mean_abs_error_pct": mean("ckpt_sum_error_pct"),
                "checkpointed_peak_max_mean_abs_error_pct": mean("ckpt_max_error_pct"),
                "overhead_share_measured": [r.get("overhead_share_measured") for r in rows],
                "overhead_share_modelled": [r.get("overhead_share_modelled") for r in rows],
                "note": "checkpointing rows decide sum vs max; overhead share = NVML peak / max_memory_allocated - 1",
            }


def part_eval_export(kit: Kit) -> None:
    with kit.part("eval_export") as p:
        run = kit.runs.get("embedded-lora")
        done = kit.work / "runs" / "embedded-lora"
        if run is None and (done / "status.json").exists():  # from an earlier kit run in the same --work
            state = json.loads((done / "status.json").read_text()).get("state")
            run = {"dir": done, "ok": state == "completed"}
        if not run or not run["ok"]:
            p.rec["skipped"].append("eval and export: the embedded-shape LoRA run did not complete")
            return
        if p.room(20, "ftwizard eval"):
            r = kit.ftwizard("eval", str(run["dir"]), "--eval-file", str(REPO / "sample_data" / "eval.jsonl"),
                             "--max-samples", "8", "--no-probe", "--json", timeout=p.left(), sample_gpu=True)
            row = {"check": "ftwizard eval", "rc": r["rc"], "seconds": r["seconds"], "nvml_peak_bytes": r["nvml_peak_bytes"]}
            if r["rc"] != 0:
                row["error"] = r["tail"].splitlines()[-1] if r["tail"] else ""
            else:
                row["summary"] = _json_tail(r["stdout"])
            p.rec["rows"].append(row)
        if p.room(20, "ftwizard export --format adapter,merged"):
            r = kit.ftwizard("export", str(run["dir"]), "--format", "adapter,merged", "--json", timeout=p.left(),
                             sample_gpu=True)
            row = {"check": "ftwizard export adapter,merged", "rc": r["rc"], "seconds": r["seconds"]}
            if r["rc"] != 0:
                row["error"] = r["tail"].splitlines()[-1] if r["tail"] else ""
            else:
                row["summary"] = _json_tail(r["stdout"])
            p.rec["rows"].append(row)


def part_distributed(kit: Kit) -> None:
    with kit.part("distributed") as p:
        for strategy in ("ddp", "fsdp"):
            if not p.room(25, f"--gpus 1 --strategy {strategy}"):
                continue
            base = kit.model_dir("embedded")
            key = f"embedded-lora-{strategy}"
            cfg = kit.write_config(key, base, "lora", steps=3 if kit.dry else 6, batch=4, max_length=512,
                                   checkpointing=False)
            row = {"check": f"--gpus 1 --strategy {strategy}"}
            row.update(kit.train(key, cfg, "--gpus", "1", "--strategy", strategy, timeout=p.left()))
            if kit.dry and strategy == "fsdp":
                # accelerate would silently run CPU processes as DDP, so ftwizard refuses FSDP on the CPU
                refused = row["rc"] != 0 and "FSDP" in (row.get("error") or "")
                row["expected"] = "refused on the CPU with a fix"
                row["rc"] = "expected" if refused else row["rc"]
            p.rec["rows"].append(row)


def part_throughput(kit: Kit) -> None:
    with kit.part("throughput") as p:
        shape = "1b"
        base = None
        have = _installed()
        variants = [("plain TRL script (defaults)", "plain", {}),
                    ("ftwizard default", "default", {}),
                    ("ftwizard, no speed-up", "none", {"padding_free": False, "no_liger": True, "no_fa": True}),
                    ("+ padding-free only", "pf", {"padding_free": True, "no_liger": True, "no_fa": True}),
                    ("+ Liger only", "liger", {"padding_free": False, "no_liger": False, "no_fa": True}),
                    ("+ FlashAttention only", "fa", {"padding_free": False, "no_liger": True, "no_fa": False})]
        for label, tag, opt in variants:
            if tag == "liger" and not (kit.liger or have["liger_kernel"]):
                p.rec["skipped"].append(f"{label}: liger-kernel not installed")
                continue
            if tag == "fa" and not (have["flash_attn"] or have["flash_attn_interface"]):
                p.rec["skipped"].append(f"{label}: flash-attn not installed")
                continue
            if tag == "pf" and not (kit.liger or have["liger_kernel"] or have["flash_attn"] or have["flash_attn_interface"]):
                p.rec["notes"].append("+ padding-free only = ftwizard default here (no Liger, no FlashAttention)")
                continue
            if tag == "default" and f"{shape}-lora" in kit.runs and kit.runs[f"{shape}-lora"]["ok"] and not kit.liger:
                prev = next((r for r in kit.results["parts"]["train"]["rows"] if r.get("run") == f"{shape}-lora"), None)
                if prev:
                    p.rec["rows"].append({"variant": label, "rc": 0, "tokens_per_s": prev.get("tokens_per_s"),
                                          "max_memory_allocated": prev.get("max_memory_allocated"),
                                          "speedups": prev.get("speedups"), "from": "part 2 run 1b-lora"})
                    continue
            if not p.room(25, label):
                continue
            key = f"tp-{tag}"
            base = base or kit.model_dir(shape)
            cfg = kit.write_config(key, base, "lora", steps=4 if kit.dry else 10, batch=4, max_length=512,
                                   checkpointing=False, padding_free=opt.get("padding_free", True))
            if tag == "plain":
                out = kit.work / f"{key}.json"
                r = kit.cmd([sys.executable, str(Path(__file__).resolve()), "--plain-trl", str(cfg), str(out)],
                            timeout=p.left(), sample_gpu=True)
                row = {"variant": label, "rc": r["rc"], "seconds": r["seconds"], "nvml_peak_bytes": r["nvml_peak_bytes"]}
                if out.exists():
                    row.update(json.loads(out.read_text()))
                elif r["rc"] != 0:
                    row["error"] = r["tail"].splitlines()[-1] if r["tail"] else ""
            else:
                env = dict(kit.env)
                if opt.get("no_liger"):
                    env["FTWIZARD_NO_LIGER"] = "1"
                elif kit.liger:
                    env["PYTHONPATH"] = os.pathsep.join([str(kit.liger), env["PYTHONPATH"]])
                if opt.get("no_fa"):
                    env["FTWIZARD_NO_FLASH_ATTN"] = "1"
                row = {"variant": label}
                row.update(kit.train(key, cfg, timeout=p.left(), env=env))
            p.rec["rows"].append(row)
            kit.save()
        base_tps = next((r.get("tokens_per_s") for r in p.rec["rows"] if r.get("variant", "").startswith("plain")), None)
        for r in p.rec["rows"]:
            if base_tps and r.get("tokens_per_s"):
                r["vs_plain_trl"] = round(r["tokens_per_s"] / base_tps, 2)


def _installed() -> dict:
    from ftwizard.training.speedups import installed

    return installed()


def _json_tail(text: str):
    for chunk in (text.strip(), text.strip().splitlines()[-1] if text.strip() else ""):
        try:
            v = json.loads(chunk)
            return {k: v[k] for k in list(v)[:12]} if isinstance(v, dict) else v
        except (ValueError, TypeError):
            continue
    return text.strip()[-500:]


# ---- the plain TRL script (part 3's baseline) ----------------------------------
def plain_trl(config: Path, out: Path) -> int:
    """What a person would write with TRL's defaults: SFTTrainer on the messages, LoRA, bf16."""
    import torch
    import yaml
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    c = yaml.safe_load(config.read_text())
    t = c["training"]
    rows = [json.loads(line) for line in Path(c["data"]["train"]).read_text().splitlines() if line.strip()]
    cuda = torch.cuda.is_available()

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                self.marks.append((time.monotonic(), logs["num_tokens"], logs.get("loss")))

    clock = Clock()
    args = SFTConfig(output_dir=str(out.parent / "plain-trl"), max_steps=t["max_steps"],
                     per_device_train_batch_size=t["batch_size"], gradient_accumulation_steps=1,
                     learning_rate=t["learning_rate"], bf16=cuda, use_cpu=not cuda, max_length=c["data"]["max_length"],
                     logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                     model_init_kwargs={"dtype": torch.bfloat16 if cuda else torch.float32})
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tr = SFTTrainer(model=c["model"]["base"], args=args, train_dataset=Dataset.from_list(rows),
                    peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                           task_type="CAUSAL_LM"), callbacks=[clock])
    tr.train()
    res: dict = {"steps": tr.state.global_step}
    if len(clock.marks) >= 3:
        (a, ta, _), (b, tb, loss) = clock.marks[0], clock.marks[-1]
        res["tokens_per_s"] = round((tb - ta) / (b - a), 1) if b > a else None
        res["final_loss"] = loss
    if cuda:
        res["max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
        res["max_memory_reserved"] = int(torch.cuda.max_memory_reserved())
    out.write_text(json.dumps(res))
    return 0


# ---- report ------------------------------------------------------------------
def _gb(b) -> str:
    return f"{b / 1e9:.2f}" if isinstance(b, (int, float)) and b else "-"


def _v(x) -> str:
    return "-" if x is None else f"{x:+.1f}" if isinstance(x, float) else str(x)


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# GPU kit ({res['mode']}), {res['started']}", "",
             f"Machine: {m.get('gpu', 'no GPU')} (CUDA {m.get('cuda')}, capability {m.get('capability')}), "
             f"{m.get('cpus')} CPUs, Python {m.get('python')}; torch {m.get('torch')}, transformers "
             f"{m.get('transformers')}, trl {m.get('trl')}, peft {m.get('peft')}, bitsandbytes {m.get('bitsandbytes')}, "
             f"liger-kernel {m.get('liger_kernel')}, flash-attn {m.get('flash_attn')}. "
             f"Elapsed {res.get('elapsed_s')} s of {res['budget_s']} s.", ""]
    for name in sorted(res["parts"], key=lambda n: PART_NUMBER[n]):
        p = res["parts"][name]
        lines += [f"## {p['number']}. {name}: {p['status']} ({p.get('seconds', '?')} s of {p['budget_s']} s)", ""]
        if p.get("error"):
            lines += [f"Part error: `{p['error']}`", ""]
        rows = p["rows"]
        if name == "train" and rows:
            lines += ["| run | rc | steps | tokens/s | speed-ups | NVML peak GB | reserved GB | allocated GB | estimate GB "
                      "| err vs NVML % | err vs reserved % | err vs allocated % | ckpt sum/max err % | overhead share meas/model |",
                      "|" + " --- |" * 14]
            for r in rows:
                sp = r.get("speedups") or {}
                spt = ",".join(k for k in ("padding_free", "liger") if sp.get(k)) + (
                    f",{sp['attention']}" if sp.get("attention") not in (None, "sdpa") else "")
                lines.append(f"| {r.get('run')} | {r.get('rc')} | {r.get('steps', '-')} | {r.get('tokens_per_s', '-')} "
                             f"| {spt or '-'} | {_gb(r.get('nvml_peak_bytes'))} | {_gb(r.get('max_memory_reserved'))} "
                             f"| {_gb(r.get('max_memory_allocated'))} | {_gb(r.get('estimate_bytes'))} "
                             f"| {_v(r.get('error_vs_nvml_pct'))} | {_v(r.get('error_vs_reserved_pct'))} "
                             f"| {_v(r.get('error_vs_allocated_pct'))} "
                             f"| {_v(r.get('ckpt_sum_error_pct'))}/{_v(r.get('ckpt_max_error_pct'))} "
                             f"| {r.get('overhead_share_measured', '-')}/{r.get('overhead_share_modelled', '-')} |")
            if p.get("calibration"):
                lines += ["", f"Calibration: `{json.dumps(p['calibration'])}`"]
        elif name == "throughput" and rows:
            lines += ["| variant | rc | tokens/s | vs plain TRL | allocated GB | speed-ups |", "|" + " --- |" * 6]
            for r in rows:
                lines.append(f"| {r.get('variant')} | {r.get('rc')} | {r.get('tokens_per_s', '-')} | "
                             f"{r.get('vs_plain_trl', '-')} | {_gb(r.get('max_memory_allocated'))} | "
                             f"{json.dumps(r.get('speedups')) if r.get('speedups') else '-'} |")
        elif rows:
            lines += ["| check | rc | seconds | facts |", "| --- | --- | --- | --- |"]
            for r in rows:
                facts = {k: v for k, v in r.items() if k not in ("check", "rc", "seconds", "summary", "run")}
                lines.append(f"| {r.get('check') or r.get('run')} | {r.get('rc')} | {r.get('seconds', '-')} | "
                             f"{json.dumps(facts, default=str)[:400]} |")
        for s in p["skipped"]:
            lines.append(f"- skipped: {s}")
        for n in p.get("notes", []):
            lines.append(f"- note: {n}")
        lines.append("")
    return "\n".join(lines)


# ---- wheels (bare GPU machine) ---------------------------------------------------
def install_wheels(wheels: Path, target: Path) -> str | None:
    """pip install --no-deps --target the carried wheels (liger-kernel apart, in target-liger); returns an error."""
    main = sorted(str(w) for w in wheels.glob("*.whl"))
    if not main:
        return f"no wheels in {wheels}"
    base = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
            "--no-cache-dir", "--upgrade", "--disable-pip-version-check"]
    r = subprocess.run(base + ["--target", str(target)] + main, capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip()[-2000:]
    liger = sorted(str(w) for w in (wheels / "liger").glob("*.whl"))
    if liger:
        r = subprocess.run(base + ["--target", str(target) + "-liger"] + liger, capture_output=True, text=True)
        if r.returncode != 0:
            return "liger: " + r.stderr.strip()[-1000:]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="folder for gpu_kit.json, gpu_kit.md and logs.txt")
    ap.add_argument("--cpu-dry-run", action="store_true", help="tiny shapes on the CPU (what the test suite runs)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all parts (GPU 450, dry run 900)")
    ap.add_argument("--parts", default=",".join(PART_ORDER), help="comma-separated: " + ",".join(PART_ORDER))
    ap.add_argument("--wheels", type=Path, default=None, help="install these wheels first (bare GPU machine)")
    ap.add_argument("--tokenizer", type=Path, default=None, help="folder with the embedded model's tokenizer files")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (models, runs); default a temp folder")
    ap.add_argument("--plain-trl", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.plain_trl:
        return plain_trl(Path(a.plain_trl[0]), Path(a.plain_trl[1]))
    if not a.out:
        ap.error("give an output folder")
    t_start = time.monotonic()
    if a.wheels and not os.environ.get("FTWIZARD_KIT_INSTALLED"):
        target = Path("/tmp/ftwizard-site")
        err = install_wheels(a.wheels, target)
        if err:
            print(f"wheel install failed: {err}", file=sys.stderr)
            return 2
        env = dict(os.environ, FTWIZARD_KIT_INSTALLED=str(time.monotonic() - t_start),
                   PYTHONPATH=os.pathsep.join(p for p in (str(target), str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        # re-run with the installed packages ahead of the system's (transformers 5.24 over 5.17)
        return subprocess.call([sys.executable, *sys.argv], env=env)
    sys.path.insert(0, str(REPO))
    out = Path(a.out).resolve()
    work = (a.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"ftwizard-gpu-kit-{os.getpid()}").resolve()
    tok = a.tokenizer
    if tok is None:
        carried = REPO / ".whl" / "tokenizer"
        if (carried / "tokenizer.json").exists():
            tok = carried
        else:
            from ftwizard.models.embedded import ensure_cached

            tok = ensure_cached(log=lambda *_: None)
    budget = a.budget or (1500.0 if a.cpu_dry_run else 450.0)
    budget -= float(os.environ.get("FTWIZARD_KIT_INSTALLED", "0") or 0)  # the install counts
    liger = Path("/tmp/ftwizard-site-liger") if not a.cpu_dry_run else None
    kit = Kit(out, a.cpu_dry_run, budget, work, Path(tok), liger)
    if not a.cpu_dry_run:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA GPU visible: run with --cpu-dry-run, or check `nvidia-smi`", file=sys.stderr)
            return 2
    wanted = [p.strip() for p in a.parts.split(",") if p.strip()]
    funcs = {"gpus": part_gpus, "train": part_train, "eval_export": part_eval_export,
             "distributed": part_distributed, "throughput": part_throughput}
    for name in PART_ORDER:
        if name not in wanted:
            continue
        if kit.left() < 5:
            kit.results["parts"][name] = {"number": PART_NUMBER[name], "status": "skipped", "budget_s": 0,
                                          "rows": [], "skipped": ["whole part: the kit's time budget ran out"]}
            continue
        funcs[name](kit)
    kit.save()
    print((out / "gpu_kit.md").read_text())
    bad = [n for n, p in kit.results["parts"].items() if p["status"] == "failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
