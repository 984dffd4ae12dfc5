"""init, train, runs, monitor, stop, resume: the engine's headless face."""

from __future__ import annotations

import argparse
import sys
import time

from ftwizard.commands import compare_cmds
from ftwizard.commands.argtypes import nonneg_int, port, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write a commented default config (embedded model, sample data)")
    p.add_argument("-o", "--output", default="ftwizard.yaml", help="where to write it (default ftwizard.yaml)")
    p.add_argument("--train", help="training file (default: the bundled sample data)")
    p.add_argument("--eval", help="held-out file")
    p.add_argument("--method", choices=["full", "lora", "qlora"])
    p.add_argument("--objective", choices=["sft", "dpo", "orpo", "kto"],
                   help="training objective (default sft; dpo/orpo/kto start from the sample preference pairs and "
                        "their own learning rate; see docs/preference.md)")
    p.add_argument("--model", help="base model: 'embedded', a local folder, or a hub id")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", action="store_true", help="print {\"wrote\": PATH} (failures: {\"error\", \"where\", \"fix\"})")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("train", help="train from a config (foreground with progress, or --detach)")
    p.add_argument("config", nargs="?", help="run config YAML (`ftwizard init` writes one); or --from RUN")
    compare_cmds.add_from_args(p)  # --from RUN --set KEY=VALUE (h15)
    p.add_argument("--detach", action="store_true", help="run in the background; survives closing the terminal")
    p.add_argument("--name", help="run name (default: method and time)")
    p.add_argument("--runs-dir", help="override runs_dir")
    p.add_argument("--max-steps", type=int, help="override training.max_steps (a pilot run)")
    p.add_argument("--json", action="store_true", help="print events as JSON lines (foreground) or the run as JSON")
    p.add_argument("--force", action="store_true", help="start even when the pre-flight check finds errors")
    _add_launch_args(p)
    p.add_argument("--print-launch", action="store_true",
                   help="print the command to run on each node (and the torchrun call) and exit")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("runs", help="list runs with state, step, loss and age (every run you started, any folder)")
    p.add_argument("--runs-dir", default=None, help="only the runs in this folder")
    p.add_argument("--json", action="store_true")
    compare_cmds.add_compare_args(p)  # --compare A B ..., --summary RUN (h15)
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("monitor", help="follow a run live (full screen; --plain for text lines)")
    p.add_argument("run", nargs="?", help="run name or folder (default: the newest active run)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--plain", action="store_true", help="text lines until the run ends")
    p.add_argument("--json", action="store_true", help="raw events as JSON lines until the run ends")
    p.add_argument("--no-follow", action="store_true", help="print what is there and exit")
    p.set_defaults(handler=cmd_monitor)

    p = sub.add_parser("stop", help="stop a run gracefully (a checkpoint is saved)")
    p.add_argument("run")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--wait", action="store_true", help="wait until it has stopped")
    p.add_argument("--timeout", type=positive_int, default=600, metavar="S",
                   help="with --wait: give up after S seconds (default 600) and say what is still running")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stop)

    p = sub.add_parser("resume", help="continue a stopped, failed or died run from its last checkpoint")
    p.add_argument("run")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--detach", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--force", action="store_true", help="resume even when the pre-flight check finds errors")
    _add_launch_args(p, resume=True)
    p.set_defaults(handler=cmd_resume)


def _add_launch_args(p: argparse.ArgumentParser, resume: bool = False) -> None:
    """Several processes / machines through torchrun (see ftwizard.training.distributed)."""
    g = p.add_argument_group("several GPUs or machines" + (" (default: as the run was launched)" if resume else ""))
    g.add_argument("--gpus", type=positive_int, metavar="N", help="processes on this machine, one per GPU (on a CPU-only "
                   "machine: N CPU processes with the gloo backend)")
    g.add_argument("--strategy", choices=["ddp", "fsdp"], help="ddp: a full copy per GPU (default); fsdp: parameters, "
                   "gradients and optimizer states sharded across GPUs")
    g.add_argument("--nodes", type=positive_int, metavar="K", help="machines taking part (default 1)")
    g.add_argument("--node-rank", type=nonneg_int, metavar="R", help="this machine's number, 0..K-1 (0 keeps the results)")
    g.add_argument("--master-addr", metavar="HOST", help="address of node 0, reachable from every node")
    g.add_argument("--master-port", type=port, metavar="P", help="a free TCP port on node 0 (default 29500)")


def _runs_dir(args):
    from pathlib import Path

    from ftwizard.paths import default_runs_dir

    return Path(args.runs_dir) if getattr(args, "runs_dir", None) else default_runs_dir()


# ---- init -------------------------------------------------------------------
def cmd_init(args) -> int:
    from pathlib import Path

    from ftwizard.config import commented_yaml, starting_config
    from ftwizard.errors import UserError
    from ftwizard.fileio import atomic_write_text

    out = Path(args.output)
    if out.exists() and not args.force:
        raise UserError(f"{out} already exists", fix="choose another -o path, or pass --force to replace it")
    for opt, given in (("--train", args.train), ("--eval", args.eval)):  # a config naming no file trains nothing
        if given:
            from ftwizard.data.loading import check_readable

            try:
                check_readable(Path(given))
            except UserError as e:
                raise UserError(f"{opt}: {e.what}", where=e.where, fix=e.fix) from None
    # the one default (shared with the wizard): the tuned sample task unless a training file is given
    cfg = starting_config(Path(args.train).resolve() if args.train else None,
                          Path(args.eval).resolve() if args.eval else None, method=args.method, base=args.model,
                          objective=getattr(args, "objective", None))
    atomic_write_text(out, commented_yaml(cfg))
    if args.json:
        import json

        print(json.dumps({"wrote": str(out)}))
        return 0
    print(f"wrote {out}")
    print(f"  check it:  ftwizard train {out} --max-steps 5     (a pilot run)")
    print(f"  train it:  ftwizard train {out} --detach")
    return 0


# ---- train ------------------------------------------------------------------
def _load_with_overrides(args):
    """The config file with the command-line overrides, all through the file's own validation."""
    from pathlib import Path

    from ftwizard.config import load_config

    args.config, extra = compare_cmds.config_source(args)  # a file, or --from RUN; --set KEY=VALUE (h15)
    return load_config(args.config, overrides={**extra, **{k: v for k, v in {
        "name": ("--name", args.name),
        "runs_dir": ("--runs-dir", str(Path(args.runs_dir).resolve()) if args.runs_dir else None),
        "training.max_steps": ("--max-steps", args.max_steps),
    }.items() if v[1] is not None}})


def cmd_train(args) -> int:
    from ftwizard.training.launch import start_run

    from ftwizard.training.distributed import spec_from_args

    cfg = _load_with_overrides(args)
    spec = spec_from_args(args)
    if args.print_launch:
        return _print_launch(args, cfg, spec)
    from ftwizard.runindex import abs_run_path

    # start_run runs the pre-flight gate (findings on stderr; refuses errors, exit 1, unless --force)
    run, proc = start_run(cfg, detach=args.detach, spec=spec, force=args.force, config_path=args.config,
                          stream=sys.stderr)
    if args.detach:
        if args.json:
            import json

            print(json.dumps({"run": run.name, "path": abs_run_path(run), "pid": proc.pid}))
        else:
            print(f"started run {run.name} in the background (pid {proc.pid})")
            print(f"  folder:  {abs_run_path(run)}")
            print(f"  follow:  ftwizard monitor {run.name}   (from any folder)")
            print(f"  stop:    ftwizard stop {run.name}")
        return 0
    return follow(run, proc=proc, json_lines=args.json)


def _print_launch(args, cfg, spec) -> int:
    from ftwizard.training.distributed import LaunchSpec, check_spec, describe_launch

    spec = spec or LaunchSpec()
    check_spec(spec, cfg.model.method, cfg.training.device, cfg.name or "NAME")
    name = cfg.name or ("NAME" if spec.nodes > 1 else None)
    print(describe_launch(spec, args.config, name, str(cfg.runs_dir / (name or "RUN"))))
    return 0


def follow(run, proc=None, json_lines: bool = False, plain_progress: bool | None = None) -> int:
    """Follow a run until it ends, printing progress; Ctrl-C asks for a graceful stop."""
    from ftwizard.monitoring import follow_run

    return follow_run(run, proc=proc, json_lines=json_lines)


# ---- runs, monitor, stop, resume --------------------------------------------
def _all_runs(args):
    """--runs-dir: that folder's runs; otherwise every run in the per-user index plus ./runs.
    Runs pruned from the index (folder moved or deleted) are said on stderr."""
    from ftwizard.runindex import indexed_runs

    if getattr(args, "runs_dir", None):
        from ftwizard.rundir import list_runs

        runs = list_runs(_runs_dir(args))
        indexed_runs([_runs_dir(args)])  # remember them for next time
        return runs
    runs, notes = indexed_runs([_runs_dir(args)])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return runs


def cmd_runs(args) -> int:
    if args.compare or args.summary:  # h15
        return compare_cmds.cmd_compare(args) if args.compare else compare_cmds.cmd_summary(args)
    runs = _all_runs(args)
    if args.json:
        import json

        print(json.dumps([dict(r.to_dict(), **compare_cmds.run_json_fields(r.path)) for r in runs], indent=2))
        return 0
    if sys.stdout.isatty() and runs:
        try:
            from ftwizard.tui.app import run_picker
        except ImportError:
            run_picker = None
        if run_picker is not None:
            return int(run_picker(str(_runs_dir(args))) or 0)
    from ftwizard.monitoring import print_runs_table

    print_runs_table(runs, _runs_dir(args) if args.runs_dir else None)
    return 0


def _newest_active_or_candidates(args):
    """`ftwizard monitor` with no name: the newest active run; none active: say which runs exist."""
    from ftwizard.errors import UserError
    from ftwizard.rundir import ACTIVE_STATES, RunDir

    runs = _all_runs(args)
    active = [r for r in runs if r.state in ACTIVE_STATES]
    if active:
        if len(active) > 1:
            others = ", ".join(r.name for r in active[1:6])
            print(f"following the newest active run, {active[0].name} (also active: {others})", file=sys.stderr)
        return RunDir(active[0].path)
    if not runs:
        raise UserError("no runs yet", fix="start one with `ftwizard train CONFIG` (or `ftwizard` for the wizard)")
    listed = "; ".join(f"{r.name} ({r.state}, {r.path})" for r in runs[:8])
    raise UserError("no run is active", fix=f"name one: `ftwizard monitor NAME` with NAME one of: {listed}")


def cmd_monitor(args) -> int:
    from ftwizard.rundir import find_run

    run = find_run(args.run, _runs_dir(args)) if args.run else _newest_active_or_candidates(args)
    run.require_readable()
    if args.plain or args.json or args.no_follow or not sys.stdout.isatty():
        from ftwizard.monitoring import follow_run

        return follow_run(run, json_lines=args.json, follow=not args.no_follow, stop_on_interrupt=False)
    try:
        from ftwizard.tui.app import run_monitor
    except ImportError:
        from ftwizard.monitoring import follow_run

        return follow_run(run, stop_on_interrupt=False)
    return int(run_monitor(str(run.path)) or 0)


def cmd_stop(args) -> int:
    from ftwizard.errors import UserError
    from ftwizard.rundir import ACTIVE_STATES, FINAL_STATES, find_run
    from ftwizard.training.launch import request_stop

    run = find_run(args.run, _runs_dir(args))
    st = run.status()
    if st.get("state") not in ACTIVE_STATES:
        why = f": {st['message']}" if st.get("message") else ""
        raise UserError(f"run {run.name} is not running (state: {st.get('state')}){why}", where=str(run.path),
                        fix=f"see `ftwizard runs`; to continue a stopped or died run: ftwizard resume {run.path}")
    request_stop(run)
    if args.wait:  # ends: a trainer that dies turns the state into died, or corrupt once unreadable
        deadline = time.monotonic() + args.timeout
        while (cur := run.status()).get("state") not in FINAL_STATES:
            if time.monotonic() > deadline:
                raise UserError(f"run {run.name} is still {cur.get('state')} after {args.timeout} s (saving its "
                                f"checkpoint can take a while on a large model)", where=str(run.log),
                                fix=f"wait longer (--timeout), read the log, or end it at once: kill {cur.get('pid')}")
            time.sleep(0.5)
    st = run.status()
    if args.json:
        import json

        print(json.dumps({"run": run.name, "state": st.get("state"), "step": st.get("step")}))
    else:
        print(f"asked run {run.name} to stop (state now: {st.get('state')}); it saves a checkpoint first")
    return 0


def _check_last_checkpoint(run) -> None:
    """Refuse a damaged last checkpoint before a trainer starts, naming the file and the way out."""
    from ftwizard.errors import UserError
    from ftwizard.rundir import damaged_model_file

    ckpt = run.last_checkpoint()
    if ckpt is None:
        return
    bad = damaged_model_file(ckpt)
    if bad is None:
        return
    path, why = bad
    older = [p for p in sorted(run.checkpoints.glob("checkpoint-*"), key=lambda p: p.name)
             if p != ckpt and p.name.split("-")[-1].isdigit()]
    older.sort(key=lambda p: int(p.name.split("-")[-1]))
    fix = (f"set it aside and resume from {older[-1].name}: mv {ckpt} {ckpt}.damaged && ftwizard resume {run.path}"
           if older else f"no earlier checkpoint to fall back on; start the run again: ftwizard train {run.config}")
    raise UserError(f"the last checkpoint of run {run.name} is damaged: {path.name} {why}", where=str(path), fix=fix)


def cmd_resume(args) -> int:
    from ftwizard.rundir import find_run
    from ftwizard.training.launch import resume_run

    from ftwizard.training.distributed import LaunchSpec, spec_from_args

    run = find_run(args.run, _runs_dir(args))
    _check_last_checkpoint(run)
    proc = resume_run(run, detach=args.detach, spec=spec_from_args(args, base=LaunchSpec.load(run.path)),
                      force=args.force, stream=sys.stderr)
    if args.detach:
        print(f"resumed run {run.name} in the background (pid {proc.pid}); follow: ftwizard monitor {run.path}")
        return 0
    return follow(run, proc=proc, json_lines=args.json)
