"""The pre-flight gate of `ftwizard train`: check, refuse on errors unless forced, report.

Output goes to stderr (stdout may carry JSON event lines). The returned dict is what
`start_run` saves as `preflight.json` in the run folder, so the monitor and the
evaluation can point back to what was known before the first step.
"""

from __future__ import annotations

import sys

from ftwizard.config import RunConfig
from ftwizard.errors import UserError


def gate_train(cfg: RunConfig, *, force: bool = False, config_path: str | None = None, stream=None) -> dict:
    from ftwizard.preflight import run_check
    from ftwizard.preflight.render import render

    stream = stream or sys.stderr
    report = run_check(cfg)
    result = report.to_dict()
    result["forced"] = bool(force and not report.ok)
    if config_path:
        result["config"] = config_path
    if not report.ok:
        print(render(report, infos=False), file=stream)
        if not force:
            n = len(report.errors)
            target = config_path or "CONFIG"
            raise UserError(
                f"pre-flight check found {n} error{'s' if n != 1 else ''} ({', '.join(sorted(report.rules_hit('error')))}): "
                "the run was not started",
                fix=f"fix them (`ftwizard check {target} --fix -o fixed.yaml` writes a corrected copy for config "
                "settings), or pass --force to start anyway",
            )
        print("pre-flight: starting anyway (--force)", file=stream)
    elif report.warnings:
        print(render(report, infos=False), file=stream)
    return result
