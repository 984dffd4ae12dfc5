"""`ftwizard gpus` and `ftwizard estimate`: what hardware is here, and will this run fit.

Argument definitions only at import time (stdlib); handlers import the domain code.
"""

from __future__ import annotations

import argparse

from ftwizard.commands.argtypes import nonneg_float, positive_float, positive_int, unit_fraction

METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit", "paged_adamw32bit", "sgd")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gpus", help="list GPUs (memory, utilisation, temperature, processes)",
                       description="List the GPUs NVML sees. Without a GPU or driver, says so and shows CPU cores and RAM.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_gpus)

    e = sub.add_parser(
        "estimate", help="peak GPU memory in parts, fit verdict, advice, time and cost",
        description="Estimate peak per-GPU training memory (in parts), whether it fits the detected or named GPU, "
        "what to change when it does not, and the time and cost of the run. Options override the config.",
    )
    e.add_argument("config", nargs="?", metavar="CONFIG", help="run config YAML (ftwizard init writes one)")
    e.add_argument("--model", help="base model: embedded, a local folder, a cached hub id, or a built-in name")
    e.add_argument("--method", choices=METHODS)
    e.add_argument("--max-length", type=positive_int, metavar="N", help="tokens per example")
    e.add_argument("--batch", type=positive_int, metavar="B", help="micro-batch per GPU")
    e.add_argument("--grad-accum", type=positive_int, metavar="A", help="gradient accumulation steps")
    e.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None)
    e.add_argument("--optimizer", choices=OPTIMIZERS)
    e.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"))
    e.add_argument("--lora-r", type=positive_int, metavar="R")
    e.add_argument("--lora-targets", metavar="LIST", help="all-linear, or comma-separated module names")
    e.add_argument("--gpus", type=positive_int, metavar="N", help="number of GPUs (default: detected, else 1)")
    e.add_argument("--strategy", choices=("ddp", "fsdp"), help="multi-GPU strategy (default ddp)")
    e.add_argument("--gpu", metavar="NAME", help="judge against this GPU from the table instead of the detected one")
    e.add_argument("--data", metavar="FILE", help="training data: real token counts for memory, time and cost "
                   "(default: the config's train file; --data '' ignores it)")
    e.add_argument("--rows", type=positive_int, help="rows of data (when no file is given; assumes max length each)")
    e.add_argument("--tokens", type=positive_int, help="training tokens per epoch (when no file is given)")
    e.add_argument("--epochs", type=positive_float)
    e.add_argument("--utilization", type=unit_fraction, metavar="U", help="assumed model FLOPs utilisation (default 0.35)")
    e.add_argument("--price", type=nonneg_float, metavar="USD_PER_HOUR", help="price per GPU-hour (default from the table)")
    e.add_argument("--list-gpus", action="store_true", help="print the GPU table (memory, TFLOP/s, price) and exit")
    e.add_argument("--probe", action="store_true", help="also run a few real training steps on the longest batches "
                   "and report the measured peak (GPU: CUDA reserved; CPU: process RSS)")
    e.add_argument("--probe-steps", type=positive_int, default=2, metavar="N", help=argparse.SUPPRESS)
    e.add_argument("--json", action="store_true", help="machine-readable output (schema ftwizard.estimate/1)")
    e.set_defaults(handler=cmd_estimate)


# ---- gpus ---------------------------------------------------------------------
def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**3:.1f} GiB"


def cmd_gpus(args: argparse.Namespace) -> int:
    import json

    from ftwizard.hardware.gpus import detect

    d = detect()
    if args.json:
        print(json.dumps(d.to_dict(), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    cpu = d.cpu
    if not d.gpus:
        con.print(f"No GPU: {d.message}. CPU: {cpu.cores} cores ({cpu.logical_cpus} threads), "
                  f"RAM {_gib(cpu.ram_total)} ({_gib(cpu.ram_available)} free).")
        return 0
    t = Table(title=f"GPUs (driver {d.driver_version or '?'}, CUDA {d.cuda_version or '?'})")
    for col in ("#", "name", "memory used / total", "free", "util", "temp", "power", "CC", "bf16", "processes"):
        t.add_column(col)
    for g in d.gpus:
        procs = ", ".join(f"{p.name}({p.pid}) {_gib(p.used_bytes)}" for p in g.processes) or "-"
        power = f"{g.power_w:.0f}/{g.power_limit_w:.0f} W" if g.power_w and g.power_limit_w else "-"
        t.add_row(str(g.index), g.name, f"{_gib(g.memory_used)} / {_gib(g.memory_total)}", _gib(g.memory_free),
                  "-" if g.utilization_gpu is None else f"{g.utilization_gpu} %",
                  "-" if g.temperature_c is None else f"{g.temperature_c} C", power,
                  g.compute_capability or "-", "yes" if g.bf16 else "no", procs)
    con.print(t)
    con.print(f"CPU: {cpu.cores} cores, RAM {_gib(cpu.ram_total)}")
    return 0


# ---- estimate -----------------------------------------------------------------
def _input_from_args(args):
    """Build the EstimateInput: config file first, then command-line overrides."""
    from ftwizard.hardware.estimate import _CONFIG_OPTIMIZER, EstimateInput

    kw: dict = {}
    cfg = None
    if args.config:
        from ftwizard.config import load_config

        cfg = load_config(args.config)
        t = cfg.training
        kw.update(
            model=cfg.model.base, method=cfg.model.method, max_length=cfg.data.max_length,
            micro_batch=t.batch_size, grad_accum=t.gradient_accumulation,
            gradient_checkpointing=t.gradient_checkpointing, optimizer=_CONFIG_OPTIMIZER.get(t.optimizer, "adamw"),
            precision=t.precision, lora_r=cfg.lora.r,
            lora_targets=cfg.lora.target_modules if isinstance(cfg.lora.target_modules, str) else tuple(cfg.lora.target_modules),
            lora_dropout=cfg.lora.dropout, epochs=t.epochs, packing=cfg.data.packing,
        )
    for arg, key in (("model", "model"), ("method", "method"), ("max_length", "max_length"), ("batch", "micro_batch"),
                     ("grad_accum", "grad_accum"), ("gradient_checkpointing", "gradient_checkpointing"),
                     ("optimizer", "optimizer"), ("precision", "precision"), ("lora_r", "lora_r"),
                     ("strategy", "strategy"), ("epochs", "epochs"), ("utilization", "utilization"),
                     ("price", "price_per_hour"), ("rows", "rows"), ("tokens", "train_tokens")):
        v = getattr(args, arg, None)
        if v is not None:
            kw[key] = v
    if args.lora_targets:
        kw["lora_targets"] = "all-linear" if args.lora_targets == "all-linear" else tuple(
            x.strip() for x in args.lora_targets.split(",") if x.strip())
    if args.data is not None:  # --data "" ignores the config's data file
        data, explicit = (args.data or None), True
    else:
        data, explicit = (str(cfg.data.train) if cfg is not None else None), False
    from pathlib import Path

    from ftwizard.data.chat_templates import trained_token_count

    try:  # chat-template token rows that train (a base without a template, or data.chat_template)
        kw["template_tokens"] = trained_token_count(str(kw.get("model", "embedded")),
                                                    cfg.data.chat_template if cfg is not None else "auto",
                                                    data if data and Path(data).exists() else None,
                                                    cfg.data.format if cfg is not None else "auto")
    except Exception:  # noqa: BLE001 - the data file and model are reported below and by the estimate
        pass
    return EstimateInput(**kw), data, cfg, explicit


def _gpu_for(args, detection):
    from ftwizard.hardware.estimate import resolve_gpu
    from ftwizard.hardware.gpus import gpu_target

    if args.gpu:
        return resolve_gpu(args.gpu), (args.gpus or 1)
    if detection is not None and detection.gpus:
        return gpu_target(detection.gpus[0]), (args.gpus or len(detection.gpus))
    return None, (args.gpus or 1)


def cmd_estimate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ftwizard.errors import UserError
    from ftwizard.hardware.estimate import estimate

    if args.list_gpus:
        return _print_catalog(args)
    inp, data, cfg, explicit = _input_from_args(args)
    notes = []
    detection = None
    if not args.gpu:
        from ftwizard.hardware.gpus import detect

        detection = detect()
    gpu, n_gpus = _gpu_for(args, detection)
    inp = inp.with_changes(gpu=gpu, n_gpus=n_gpus)
    if gpu is None:  # no GPU here and none named: the run would train on this CPU (fp32, no CUDA), as `check` says
        inp = inp.with_changes(device="cpu")  # precision auto then means fp32
    if data and not Path(data).exists():
        if explicit:
            raise UserError("data file not found", where=str(data), fix="check the path (--data FILE)")
        notes.append(f"the config's data file {data} was not found: no token counts, nominal max length used")
        data = None
    if data:
        from ftwizard.hardware.datatokens import data_lengths

        model = inp.model if isinstance(inp.model, str) else "embedded"
        fmt = cfg.data.format if cfg is not None else "auto"
        sp = cfg.data.system_prompt if cfg is not None else None
        inp = inp.with_changes(lengths=tuple(data_lengths(data, model, fmt=fmt, system_prompt=sp,
                                                           chat_template=cfg.data.chat_template if cfg else "auto")))
    est = estimate(inp)
    out = est.to_dict()
    out["notes"].extend(notes)
    if gpu is None:
        out["notes"].append(detection.message if detection and detection.message else "no GPU given")
    if args.probe:
        from ftwizard.hardware.probe import run_probe_subprocess

        out["probe"] = run_probe_subprocess(args, est, data, cfg)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    _render(out)
    return 0


def _print_catalog(args) -> int:
    import json

    from ftwizard.hardware.catalog import catalog, overrides_path

    specs = catalog()
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"GPU table (edit prices in {overrides_path()})")
    for c in ("name", "memory", "bf16 TFLOP/s", "fp16 TFLOP/s", "CC", "USD/h"):
        t.add_column(c, justify="right" if c != "name" else "left")
    for s in specs:
        t.add_row(s.name, f"{s.memory_gib:.0f} GiB", f"{s.bf16_tflops:g}" if s.bf16_tflops else "-",
                  f"{s.fp16_tflops:g}", s.compute_capability or "-",
                  f"{s.price_per_hour:.2f}" if s.price_per_hour is not None else "-")
    Console().print(t)
    return 0


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _render(d: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from ftwizard.hardware.memory import PART_LABELS

    con = Console()
    m, st = d["model"], d["settings"]
    con.print(f"[bold]{m['name']}[/] ({m['total_params'] / 1e9:.2f}B params, {m['trainable_params']:,} trainable) "
              f"{st['method']}, seq {st['seq_len']}, micro-batch {st['micro_batch']} x accum {st['grad_accum']}, "
              f"{st['precision']}, {st['optimizer']}, checkpointing {'on' if st['gradient_checkpointing'] else 'off'}, "
              f"{st['n_gpus']} GPU{'s' if st['n_gpus'] > 1 else ''} ({st['strategy']})")
    t = Table(title=f"Peak memory per GPU (at the {d['peak_phase'].replace('_', ' ')})")
    t.add_column("part")
    t.add_column("GiB", justify="right")
    for k, v in d["parts"].items():
        if v:
            t.add_row(PART_LABELS.get(k, k), f"{v / 1024**3:.2f}")
    t.add_row("[bold]total[/]", f"[bold]{d['total_bytes'] / 1024**3:.2f}[/]")
    con.print(t)
    g = d["gpu"]
    colour = {"fits": "green", "tight": "yellow", "does_not_fit": "red"}.get(d["verdict"], "white")
    if g:
        con.print(f"GPU: {g['name']} ({g['source']}), {g['memory_bytes'] / 1024**3:.1f} GiB -> "
                  f"[{colour} bold]{d['verdict'].replace('_', ' ')}[/] "
                  f"(headroom {d['headroom_bytes'] / 1024**3:+.1f} GiB)")
    else:
        con.print("GPU: none to compare with (give --gpu NAME; `ftwizard estimate --list-gpus` shows the table)")
    if d["advice"]:
        a = Table(title="What would make it fit (each re-estimated)")
        for c in ("change", "new total", "verdict"):
            a.add_column(c)
        for x in d["advice"]:
            a.add_row(x["change"], f"{x['total_bytes'] / 1024**3:.1f} GiB", x["verdict"].replace("_", " "))
        con.print(a)
    c = d.get("cheapest_gpu")
    if c:
        extra = f", about ${c['cost']:.2f} for this run" if c.get("cost") is not None else ""
        con.print(f"Cheapest GPU in the table that fits: {c['name']} ({c['memory_bytes'] / 1024**3:.0f} GiB, "
                  f"${c['price_per_hour']:.2f}/h{extra}; prices: `ftwizard estimate --list-gpus`)")
    if d["tokens"] and d["time_s"] is None:
        con.print(f"Training: {d['tokens']:,} tokens, {d['flops'] / 1e15:.1f} PFLOP; time and cost need a GPU (--gpu NAME)")
    elif d["tokens"]:
        cost = f"${d['cost']:.2f}" if d["cost"] is not None else "- (no price)"
        con.print(f"Training: {d['tokens']:,} tokens, {d['flops'] / 1e15:.1f} PFLOP -> time {_fmt_time(d['time_s'])}"
                  f" at {d['utilization']:.0%} utilisation of {d['peak_tflops'] or '?'} TFLOP/s, cost {cost}")
    for n in d["notes"]:
        con.print(f"[dim]note: {n}[/]")
    if "probe" in d:
        p = d["probe"]
        if p.get("error"):
            con.print(f"[red]probe failed:[/] {p['error']}")
        else:
            con.print(f"Probe ({p['device']}, {p['steps']} steps on the longest batches, seq {p['seq_len']}): "
                      f"measured {p['measured_bytes'] / 1024**3:.2f} GiB vs estimate "
                      f"{p['estimate_compared_bytes'] / 1024**3:.2f} GiB ({p['error_pct']:+.1f} %)")
            con.print(f"[dim]  measured: {p['metric']}[/]")
