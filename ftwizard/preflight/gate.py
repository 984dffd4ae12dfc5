"""The pre-flight gate: the one place every start and resume passes through.

`training.launch.start_run` and `resume_run` call `gate_start` / `gate_resume`, so no
entry point (CLI `train`/`resume`, the wizard's Train step, a script) can start a run
without a check: errors refuse to start unless the user confirmed them (`force`, the
CLI's --force, the wizard's deliberate key), and the report is saved as
`preflight.json` in the run folder, for the monitor and the evaluation.

A screen that wants to show the findings before starting calls `preflight_report(cfg)`
and hands the report to `start_run(cfg, preflight=report, force=...)`; the report
carries a hash of the config it judged, and a report for a different config (the
user edited a field after looking) is not trusted: the gate checks again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ftwizard.config import RunConfig
from ftwizard.errors import UserError

PREFLIGHT_FILE = "preflight.json"


class PreflightBlocked(UserError):
    """The check found errors and the start was not confirmed. `.report` holds the findings
    (a `Report`, or the saved dict for a resume) so a screen can list them."""

    def __init__(self, what: str, *, report: Any = None, where: str | None = None, fix: str | None = None):
        super().__init__(what, where=where, fix=fix)
        self.report = report


def config_hash(cfg: RunConfig) -> str:
    """What a report was made for. `name` and `runs_dir` are left out: they do not change the run."""
    d = cfg.to_dict()
    d.pop("name", None)
    d.pop("runs_dir", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def preflight_report(cfg: RunConfig, *, data: str = "lint", isolated: bool = False, timeout_s: float = 600):
    """The full check a start will make (no weights load; 1-2 s cold, much less with the lint
    cached). The report remembers which config it judged (`facts["config_hash"]`).

    isolated: run it in a child process (`python -m ftwizard.preflight.gate`), for the wizard,
    whose process never imports transformers (the tokenizer needs it on a lint-cache miss)."""
    if isolated:
        return _isolated_report(cfg, data, timeout_s)
    from ftwizard.preflight import run_check

    report = run_check(cfg, data=data)
    report.facts["config_hash"] = config_hash(cfg)
    return report


def _isolated_report(cfg: RunConfig, data: str, timeout_s: float):
    import subprocess
    import tempfile

    from ftwizard.preflight.report import Report

    with tempfile.TemporaryDirectory(prefix="ftwizard-check-") as tmp:
        path = Path(tmp) / "config.yaml"
        cfg.save(path)
        try:
            r = subprocess.run([sys.executable, "-m", "ftwizard.preflight.gate", str(path), "--data", data],
                               capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise UserError(f"the pre-flight check took longer than {timeout_s:.0f} s",
                            fix="try again when the machine is less busy") from None
    try:
        payload = json.loads(r.stdout)
    except ValueError:
        payload = None
    if r.returncode != 0 or not isinstance(payload, dict):
        if isinstance(payload, dict) and payload.get("error"):
            raise UserError(payload["error"], where=payload.get("where"), fix=payload.get("fix"))
        tail = " | ".join(r.stderr.strip().splitlines()[-3:])
        raise UserError(f"the pre-flight check could not run: {tail or f'exit code {r.returncode}'}")
    report = Report.from_dict(payload)
    report.facts["config_hash"] = config_hash(cfg)  # it judged exactly this config (saved and re-read)
    return report


def _blocked(n_errors: int, rules: list[str], config_path: str | None, *, report: Any, resume: str | None = None):
    target = config_path or "CONFIG"
    what = (f"pre-flight check found {n_errors} error{'s' if n_errors != 1 else ''} ({', '.join(sorted(rules))}): "
            f"the run was not {'resumed' if resume else 'started'}")
    if resume:
        fix = f"fix the data or settings and start a new run, or `ftwizard resume {resume} --force` to continue anyway"
    else:
        fix = (f"fix them (`ftwizard check {target} --fix -o fixed.yaml` writes a corrected copy for config "
               "settings), or pass --force to start anyway (in the wizard: confirm the errors)")
    return PreflightBlocked(what, report=report, fix=fix)


def gate_start(cfg: RunConfig, preflight: Any = None, *, force: bool = False, config_path: str | None = None,
               stream=None, isolated: bool = False) -> dict:
    """Check `cfg` (or reuse `preflight`, a Report made for this very config), refuse on errors
    unless `force`, and return the dict to save as preflight.json. Prints findings to `stream`
    when one is given (the CLI passes stderr; the wizard shows the report itself)."""
    from ftwizard.preflight.report import Report

    report = preflight if isinstance(preflight, Report) else None
    if report is None or report.facts.get("config_hash") != config_hash(cfg):
        report = preflight_report(cfg, isolated=isolated)  # none given, or made for another config: never trust it
    result = report.to_dict()
    result["forced"] = bool(force and not report.ok)
    if config_path:
        result["config"] = str(config_path)
    if stream is not None and (report.errors or report.warnings):
        from ftwizard.preflight.render import render

        print(render(report, infos=False), file=stream)
    if not report.ok:
        if not force:
            raise _blocked(len(report.errors), sorted(report.rules_hit("error")), config_path, report=report)
        if stream is not None:
            print("pre-flight: starting anyway (--force)", file=stream)
    return result


def gate_train(cfg: RunConfig, *, force: bool = False, config_path: str | None = None, stream=None) -> dict:
    """`ftwizard train`'s gate with its output on stderr (kept for callers and tests)."""
    return gate_start(cfg, None, force=force, config_path=config_path, stream=stream or sys.stderr)


def save_preflight(run_path: Path, result: dict) -> None:
    from ftwizard.fileio import atomic_write_text

    atomic_write_text(Path(run_path) / PREFLIGHT_FILE, json.dumps(result, indent=2, default=str))


def read_preflight(run_path: Path) -> dict | None:
    try:
        data = json.loads((Path(run_path) / PREFLIGHT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def gate_resume(run_path: Path, cfg: RunConfig, *, force: bool = False, stream=None, isolated: bool = False) -> dict:
    """A resume passes the same gate. The run's own preflight.json is reused when it judged this
    config and either found no error or was confirmed; otherwise (a run from before the gate, a
    corrupt file, an edited config) the check runs again and its result replaces the file."""
    saved = read_preflight(run_path)
    if saved is not None and saved.get("facts", {}).get("config_hash") == config_hash(cfg) \
            and (saved.get("ok") or saved.get("forced")):
        return saved
    try:
        result = gate_start(cfg, None, force=force, stream=stream, isolated=isolated)
    except PreflightBlocked as e:
        run_name = Path(run_path).name
        raise _blocked(len(e.report.errors), sorted(e.report.rules_hit("error")), None, report=e.report,
                       resume=run_name) from None
    save_preflight(run_path, result)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m ftwizard.preflight.gate CONFIG [--data lint|cached|skip]`: the report as one JSON
    object on stdout, with the exact token lengths (what `preflight_report(isolated=True)` reads).
    Exit 0 with a report (errors included: they are findings); 1 with {"error", "where", "fix"}."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m ftwizard.preflight.gate")
    p.add_argument("config")
    p.add_argument("--data", default="lint", choices=["lint", "cached", "skip"])
    args = p.parse_args(argv)
    try:
        from ftwizard.config import load_config

        report = preflight_report(load_config(args.config), data=args.data)
    except UserError as e:
        print(json.dumps(e.to_dict()))
        return 1
    out = report.to_dict()
    out["train_lengths"] = report.train_lengths
    out["eval_lengths"] = report.eval_lengths
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
