"""Command line: `ftwizard` opens the wizard; subcommands run each step headless.

Start-up must stay under a second, so this module and the command modules it
registers import only the standard library at import time; every handler imports
what it needs when it runs. A failure the user can fix is printed as a short message
(what, where, what to do) with exit code 1; an unexpected one is summarised in one
line with the traceback saved to a file, never dumped on the screen. The exit codes and
the `--json` error object are listed in ftwizard/errors.py and README.md.
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
    "ftwizard.commands.chat_cmds",      # chat, serve
]


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are raised (exit 2, JSON under --json) instead of printed and exited.

    Subparsers are made with the parent's class, so every command gets this behaviour.
    """

    def error(self, message: str):  # noqa: D401 - argparse's hook
        from ftwizard.errors import UsageError

        raise UsageError(message, where=f"command line ({self.prog})", fix=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from ftwizard import __version__

    parser = Parser(
        prog="ftwizard",
        description="Fine-tune an LLM, from 'should I?' to a trained, evaluated, exported model. "
        "With no command, opens the wizard.",
        epilog="Exit codes: 0 ok, 1 failure you can fix (or errors found), 2 usage error, 3 run busy, "
        "70 internal error, 130 interrupted. With --json every failure is one JSON object "
        '{"error", "where", "fix"} on stdout.',
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


def _report(err, as_json: bool) -> int:
    """Print one failure: a JSON object on stdout under --json, and the readable lines on stderr."""
    if as_json:
        import json

        try:
            print(json.dumps(err.to_dict()), flush=True)
        except (BrokenPipeError, ValueError):
            pass
    try:
        print(err.render(), file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):
        pass
    return err.code


def as_user_error(exc: BaseException):
    """Map any failure that escaped a command to a located UserError (None: not a user's situation).

    This is the one boundary that turns OS failures, input nested too deeply and config
    validation that slipped past the command into the error contract.
    """
    from ftwizard.errors import UserError, from_os_error

    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError):
        return from_os_error(exc)
    if isinstance(exc, RecursionError):
        return UserError("the input is nested too deeply to read (thousands of levels of brackets)",
                         where="(the file given on the command line)", fix="flatten the data; no real example "
                         "nests more than a few dozen levels")
    if isinstance(exc, MemoryError):
        return UserError("out of memory while reading the input", where="(the file given on the command line)",
                         fix="check that the file is what you meant (not binary data); split very large files")
    if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        from ftwizard.config import validation_message

        return validation_message(exc, "(a setting)")
    return None


def main(argv: list[str] | None = None) -> int:
    from ftwizard.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, UserError

    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    args = None
    try:
        args = build_parser().parse_args(argv)
        as_json = bool(getattr(args, "json", False)) or as_json
        if args.command is None:
            return _open_wizard(args)
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except SystemExit:
        raise  # --help and --version
    except Exception as e:
        err = as_user_error(e)
        if err is not None:
            return _report(err, as_json)
        # last resort: a bug. One line, details to a file; under --json still one object.
        path = _crash_report(e)
        first = str(e).splitlines()[0] if str(e) else ""
        bug = UserError(f"internal error ({type(e).__name__}: {first})", where=f"details: {path}",
                        fix="please report this with the details file", code=EXIT_INTERNAL)
        return _report(bug, as_json)


def _silence_stdout() -> None:
    """After a closed pipe (`ftwizard runs | head`), keep Python's exit flush from printing a traceback."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _open_wizard(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("ftwizard.tui.app") is None:
        print("The wizard is not built yet. Try `ftwizard --help` for the headless commands.", file=sys.stderr)
        return 2
    from ftwizard.tui.app import run_wizard

    return int(run_wizard(config=args.config, runs_dir=args.runs_dir) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
