"""`ftwizard runs --compare A B ...`, `runs --summary RUN`, and `train --from RUN --set KEY=VALUE`.

The parsers live in run_cmds.py (the `runs` and `train` commands); the work is here.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

FACT_KEYS = ("final_loss", "best_loss", "best_step", "final_eval_loss", "best_eval_loss", "best_eval_step", "eval")


def add_compare_args(p) -> None:
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="show these runs side by side: differing config keys, losses, eval metrics, loss curves")
    p.add_argument("--summary", metavar="RUN", help="(re)write RUN's summary.md and print it")


def add_from_args(p) -> None:
    p.add_argument("--from", dest="from_run", metavar="RUN",
                   help="start from RUN's config instead of a config file (iterate: --from RUN --set KEY=VALUE)")
    p.add_argument("--set", dest="set_values", action="append", default=[], metavar="KEY=VALUE",
                   help="change one config field, e.g. training.learning_rate=1e-4 (repeatable; YAML values)")


def _runs(args, refs: list[str]):
    from ftwizard.commands.run_cmds import _runs_dir
    from ftwizard.rundir import find_run

    return [find_run(r, _runs_dir(args)) for r in refs]


def run_json_fields(run_path) -> dict[str, Any]:
    """The comparison facts added to each run in `ftwizard runs --json`."""
    from ftwizard.compare import run_facts
    from ftwizard.rundir import RunDir

    facts = run_facts(RunDir(run_path))
    return {k: facts[k] for k in FACT_KEYS}


def cmd_compare(args) -> int:
    from ftwizard.compare import compare_runs
    from ftwizard.errors import UsageError

    if len(args.compare) < 2:
        raise UsageError("--compare needs two or more runs", fix="`ftwizard runs --compare RUN_A RUN_B`")
    cmp = compare_runs(_runs(args, args.compare))
    if args.json:
        import json

        print(json.dumps(cmp, indent=2))
        return 0
    from rich.console import Console

    from ftwizard.tui.widgets.compare_view import compare_renderable

    size = shutil.get_terminal_size((80, 24))
    width = max(40, min(size.columns, 160))
    console = Console(width=width, highlight=False, force_terminal=sys.stdout.isatty() or None)
    console.print(compare_renderable(cmp, width, max(10, min(20, size.lines // 2))))
    return 0


def cmd_summary(args) -> int:
    from ftwizard.summary import write_summary

    (run,) = _runs(args, [args.summary])
    path = write_summary(run)
    if args.json:
        import json

        print(json.dumps({"run": run.name, "summary": str(path)}))
    else:
        print(path.read_text(), end="")
    return 0


def parse_set(values: list[str]) -> dict[str, tuple[str, Any]]:
    """--set KEY=VALUE items as load_config overrides: h17's one parser (config.parse_set_args)."""
    from ftwizard.config import parse_set_args

    return parse_set_args(values, "--set")


def next_name(base: str, runs_dir: Path) -> str:
    """BASE-2, BASE-3, ...: the first name not taken in runs_dir (a trailing -N is counted on)."""
    m = re.fullmatch(r"(.*)-(\d+)", base)
    stem, n = (m.group(1), int(m.group(2)) + 1) if m else (base, 2)
    while (Path(runs_dir) / f"{stem}-{n}").exists():
        n += 1
    return f"{stem}-{n}"


def config_source(args) -> tuple[str, dict[str, tuple[str, Any]]]:
    """(config path, extra overrides) for `train`: a file, or --from RUN's config with a fresh name."""
    from ftwizard.errors import UsageError

    overrides = parse_set(getattr(args, "set_values", None) or [])
    if getattr(args, "from_run", None):
        if args.config:
            raise UsageError("give a config file or --from RUN, not both", fix="drop one of them")
        (run,) = _runs(args, [args.from_run])
        if not run.config.is_file():
            from ftwizard.errors import UserError

            raise UserError(f"run {run.name} has no config.yaml", where=str(run.path),
                            fix="pass a config file instead of --from")
        if not args.name:
            import yaml

            try:
                old = yaml.safe_load(run.config.read_text()) or {}
            except yaml.YAMLError:
                old = {}
            runs_dir = Path(args.runs_dir) if args.runs_dir else Path(old.get("runs_dir") or run.path.parent)
            overrides["name"] = ("--from", next_name(run.name, runs_dir))
        return str(run.config), overrides
    if not args.config:
        raise UsageError("train needs a config file or --from RUN",
                         fix="`ftwizard train CONFIG.yaml`, or `ftwizard train --from RUN --set KEY=VALUE`")
    return args.config, overrides
