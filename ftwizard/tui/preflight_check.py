"""The pre-flight check for the wizard, run in a subprocess.

`ftwizard.preflight.gate.preflight_report` counts tokens with the model's tokenizer, so it
imports transformers; the TUI process never does (tests/test_imports.py). The wizard
writes the config it is about to start to a temporary YAML (absolute paths), runs
`python -m ftwizard check FILE --json`, and rebuilds the `Report`. Handed to
`start_run(cfg, preflight=report)`, the gate reuses it: the same check, one home
(`ftwizard.preflight`), only the process differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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


def check_in_subprocess(cfg: RunConfig, *, timeout: float = 600, gpu: str | None = None):
    """Run `ftwizard check --json` on `cfg` in a child process and return its Report, tagged with the
    hash of `cfg` so that `start_run(cfg, preflight=report)` trusts it."""
    from ftwizard.preflight.gate import config_hash

    with tempfile.TemporaryDirectory(prefix="ftwizard-check-") as tmp:
        path = Path(tmp) / "wizard.yaml"
        cfg.save(path)
        cmd = [sys.executable, "-m", "ftwizard", "check", str(path), "--json"]
        if gpu:
            cmd += ["--gpu", gpu]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"the pre-flight check took over {timeout:.0f} s") from None
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise CheckFailed(f"the pre-flight check did not run: {tail}") from None
    if "findings" not in data:
        raise CheckFailed(str(data.get("error") or "the pre-flight check gave no findings")
                          + (f" ({data['fix']})" if data.get("fix") else ""))
    report = report_from_dict(data)
    report.facts["config_hash"] = config_hash(cfg)
    return report
