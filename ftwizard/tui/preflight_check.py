"""The pre-flight check for the wizard, run in a subprocess.

`ftwizard.preflight.gate.preflight_report` counts tokens with the model's tokenizer, so it
imports transformers; the TUI process never does (tests/test_imports.py). The wizard asks
the gate for the check in a child process (`preflight_report(cfg, isolated=True)`) on the
config with absolute paths. Handed to `start_run(cfg, preflight=report)`, the gate reuses
it: the same check, one home (`ftwizard.preflight`), only the process differs.
"""

from __future__ import annotations

from pathlib import Path

from ftwizard.config import RunConfig


def report_from_dict(d: dict):
    """A `Report` from its JSON (schema ftwizard.preflight/1); `Report.from_dict` when the domain has it."""
    from ftwizard.preflight.report import Finding, Report

    if hasattr(Report, "from_dict"):
        return Report.from_dict(d)
    names = set(Finding.__dataclass_fields__)
    findings = [Finding(**{k: v for k, v in f.items() if k in names}) for f in d.get("findings", [])]
    return Report(findings=findings, facts=dict(d.get("facts") or {}), estimate=d.get("estimate"),
                  skipped=list(d.get("skipped") or []), elapsed_s=float(d.get("elapsed_s") or 0.0))


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """The config with data paths made absolute (against the current folder), as a start would see them."""
    data = cfg.data.model_copy(update={
        "train": Path(cfg.data.train).expanduser().resolve(),
        "eval": Path(cfg.data.eval).expanduser().resolve() if cfg.data.eval else None,
    })
    return cfg.model_copy(update={"data": data})


class CheckFailed(Exception):
    """The check itself could not run (not: it found problems). The message says why, in words."""


def check_in_subprocess(cfg: RunConfig, *, timeout: float = 600):
    """The gate's own check (`preflight_report(cfg, isolated=True)`: a child process) on `cfg`, whose
    data paths must be absolute (the child reads the config from a temporary folder). The report is
    tagged with the hash of `cfg`, so `start_run(cfg, preflight=report)` trusts it."""
    from ftwizard.errors import UserError
    from ftwizard.preflight.gate import config_hash, preflight_report

    try:
        report = preflight_report(cfg, isolated=True, timeout_s=timeout)
    except UserError as e:
        raise CheckFailed(e.what + (f" ({e.fix})" if e.fix else "")) from None
    report.facts["config_hash"] = config_hash(cfg)
    return report
