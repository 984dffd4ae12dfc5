"""Command line: `ftwizard` opens the wizard; subcommands run each step headless.

Start-up must stay under a second, so this module and the command modules it
registers import only the standard library at import time; every handler imports
what it needs when it runs. A failure the user can fix is printed as a short message
(what, where, what to do) with exit code 1; an unexpected one is summarised in one
line with the traceback saved to a file, never dumped on the screen.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# Each module defines register(subparsers); its handlers import heavy things lazily.
COMMAND_MODULES = [
    "ftwizard.commands.run_cmds",       # init, train, runs, monitor, stop, resume
    "ftwizard.commands.data_cmds",      # lint, data
    "ftwizard.commands.hardware_cmds",  # gpus, estimate
    "ftwizard.commands.check_cmds",     # check
    "ftwizard.commands.eval_cmds",      # eval
    "ftwizard.commands.export_cmds",    # export
]


def build_parser() -> argparse.ArgumentParser:
    from ftwizard import __version__

    parser = argparse.ArgumentParser(
        prog="ftwizard",
        description="Fine-tune an LLM, from 'should I?' to a trained, evaluated, exported model. "
        "With no command, opens the wizard.",
    )
    parser.add_argument("--version", action="version", version=f"ftwizard {__version__}")
    parser.add_argument("--config", metavar="FILE", help="open the wizard prefilled from a run config")
    parser.add_argument("--runs-dir", metavar="DIR", help="runs folder for the wizard (default ./runs)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:  # a step not built yet is simply absent
            continue
        importlib.import_module(name).register(sub)
    return parser


def _crash_report(exc: BaseException) -> str:
    import tempfile
    import traceback

    from ftwizard.paths import cache_dir

    text = "".join(traceback.format_exception(exc))
    try:
        d = cache_dir() / "crash"
        d.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="ftwizard-", suffix=".txt", dir=d)
        with open(fd, "w") as f:
            f.write(text)
        return path
    except OSError:
        return "(could not be saved)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ftwizard.errors import UserError

    try:
        if args.command is None:
            return _open_wizard(args)
        return int(args.handler(args) or 0)
    except UserError as e:
        if getattr(args, "json", False):
            import json

            print(json.dumps(e.to_dict()))
        print(e.render(), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # last resort: one line, details to a file
        path = _crash_report(e)
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        print(f"  details: {path}", file=sys.stderr)
        print("  fix:     please report this with the details file", file=sys.stderr)
        return 1


def _open_wizard(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("ftwizard.tui.app") is None:
        print("The wizard is not built yet. Try `ftwizard --help` for the headless commands.", file=sys.stderr)
        return 2
    from ftwizard.tui.app import run_wizard

    return int(run_wizard(config=args.config, runs_dir=args.runs_dir) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
