"""eval: score the base model, each checkpoint and the final model on held-out data, side by side."""

from __future__ import annotations

import argparse
import sys
import time

from ftwizard.commands.argtypes import nonneg_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="held-out metrics for base vs checkpoints vs final, plus a regression probe",
        description="Evaluate a run on its held-out file: the base model, each checkpoint and the final model, "
        "with metrics chosen from the data (JSON, labels or free text), eval loss, and a general-knowledge probe. "
        "Pass a config YAML instead of a run (or --baseline-only) to score the base model before training. "
        "Results go to RUN/eval/ (one JSON per model and summary.json); models already evaluated are skipped.",
    )
    p.add_argument("run", help="run name or folder; or a config YAML to score the base model before training")
    p.add_argument("--eval-file", help="held-out file (default: the config's data.eval)")
    p.add_argument("--checkpoints", choices=["all", "best", "final"], default="all",
                   help="which fine-tuned models: every checkpoint and final (default), the checkpoint with the "
                        "lowest logged eval loss and final, or final only")
    p.add_argument("--max-samples", type=positive_int, help="evaluate the first N held-out rows only")
    p.add_argument("--baseline-only", action="store_true", help="score the base model only (before training)")
    p.add_argument("--few-shot", type=nonneg_int, default=None, metavar="K",
                   help="also score the base model with K training rows as examples in the prompt (default: "
                        "evaluation.few_shot, 3; 0 leaves the k-shot row out)")
    p.add_argument("--metric", metavar="NAME", help="primary metric for the verdict and the best checkpoint "
                   "(default: from the task: answer_accuracy for math, field_score for JSON, macro_f1 for labels, "
                   "rouge_l for text; or a JSON field name, exact_match, eval_loss, your evaluation.scorer)")
    p.add_argument("--no-probe", action="store_true", help="skip the regression probe")
    p.add_argument("--probe-size", type=positive_int, metavar="N", help="use N of the probe prompts, spread over its "
                   "categories (quicker, coarser)")
    p.add_argument("--batch-size", type=positive_int, help="generation batch (default 8 on CPU, 32 on a GPU)")
    p.add_argument("--redo", action="store_true", help="evaluate every model again, ignoring earlier results")
    p.add_argument("--samples", type=nonneg_int, default=3, metavar="N", help="sample outputs to print (default 3)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--json", action="store_true", help="print the summary JSON (documented in ftwizard.evaluation.compare)")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args) -> int:
    import json
    from pathlib import Path

    from ftwizard.errors import UserError
    from ftwizard.evaluation import launch
    from ftwizard.paths import default_runs_dir

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    cfg, run = launch.resolve_target(args.run, runs_dir)
    if run is None and args.runs_dir:  # a config's baseline goes where --runs-dir says, as `train --runs-dir` would
        cfg = cfg.model_copy(update={"runs_dir": Path(args.runs_dir)})
    if args.few_shot is not None and args.few_shot < 0:
        raise UserError("--few-shot must be 0 or more")
    eval_file = Path(args.eval_file).resolve() if args.eval_file else None
    spec_eval = eval_file or cfg.data.eval
    baseline_dir = launch.eval_dir_for_config(cfg, Path(spec_eval).resolve()) if spec_eval else None
    if run is None:
        eval_dir = baseline_dir
    else:
        eval_dir = run.eval_dir
        st = run.status().get("state")
        if st in ("starting", "running", "stopping") and not args.json:
            print(f"note: run {run.name} is still {st}; evaluating the checkpoints saved so far", file=sys.stderr)
    models = launch.plan_models(cfg, run, args.checkpoints, args.baseline_only or run is None, args.few_shot)
    spec = launch.make_spec(cfg, models, run=run, eval_file=eval_file, max_samples=args.max_samples,
                            batch_size=args.batch_size, probe=not args.no_probe, baseline_dir=baseline_dir,
                            probe_size=args.probe_size, metric=args.metric, config_dir=_config_dir(args.run, cfg))
    if args.redo:
        for m in models:
            (eval_dir / f"{m['id']}.json").unlink(missing_ok=True)
        spec["baseline_dir"] = None
    proc = launch.start_eval(eval_dir, spec)
    if not args.json:
        print(f"evaluating {', '.join(m['id'] for m in models)} on {Path(spec['eval_file']).name} "
              f"(results in {eval_dir})", file=sys.stderr)
    rc = follow_eval(eval_dir, proc, quiet=args.json)
    st = launch.read_eval_status(eval_dir)
    if rc != 0 or st.get("state") != "completed":
        raise UserError(f"the evaluation failed: {st.get('message') or f'exit code {rc}'}",
                        where=str(eval_dir / "eval.log"), fix="read the log; fix the cause and run the same command "
                        "again (models already evaluated are kept)")
    from ftwizard.evaluation.compare import read_summary

    summary = read_summary(eval_dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print_summary(summary, samples=args.samples)
    return 0


def _config_dir(target: str, cfg):
    """Where a custom scorer module is looked for: beside the config YAML, or beside a run's training file."""
    from pathlib import Path

    p = Path(target)
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return p.resolve().parent
    return Path(cfg.data.train).resolve().parent if cfg.data.train else None


def follow_eval(eval_dir, proc, quiet: bool = False) -> int:
    """Print progress lines from the eval's events until the process ends; Ctrl-C stops it."""
    from ftwizard.evaluation.launch import EvalProgress, describe_event, fmt_duration
    from ftwizard.rundir import EventReader

    reader = EventReader(eval_dir / "events.jsonl")
    reader.read_new()  # earlier evaluations' events are history
    last_line = ""
    progress = EvalProgress()
    try:
        while True:
            for e in reader.read_new():
                progress.feed(e)
                line = describe_event(e)
                eta = progress.eta_s(e.get("time")) if e.get("event") == "progress" else None
                if line and eta is not None and eta >= 1:  # 0 at a phase's end: later phases are not known yet
                    line += f" (about {fmt_duration(eta)} left)"
                if line and not quiet and line != last_line:
                    print(line, file=sys.stderr, flush=True)
                    last_line = line
            if proc.poll() is not None:
                for e in reader.read_new():
                    line = describe_event(e)
                    if line and not quiet:
                        print(line, file=sys.stderr)
                return proc.returncode
            time.sleep(0.3)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        print("evaluation interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def print_summary(summary: dict, samples: int = 3) -> None:
    from rich.console import Console

    from ftwizard.evaluation.report import legend, metrics_table, sample_view, verdict_text

    console = Console()
    console.print(metrics_table(summary))
    console.print(verdict_text(summary))
    console.print(legend(summary))
    for i in range(min(samples, len(summary.get("samples") or []))):
        console.print(sample_view(summary, i))
        console.print()
