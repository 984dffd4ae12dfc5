"""`fix_config`: a corrected copy of a config from the findings that are config edits.

Only settings change (never data files, never the original config). When two findings
edit the same field, the more severe (then the earlier rule) wins: the memory fix for
an error beats a warning's wish for a longer max length.
"""

from __future__ import annotations

from typing import Any

from ftwizard.config import RunConfig
from ftwizard.preflight.report import Report


def planned_edits(report: Report, rules=None) -> list[tuple[str, Any, str]]:
    """(field, new value, rule) for every edit that `fix_config` would apply, in order;
    `rules` limits them to those rule ids (one key in the wizard applies one finding's fix)."""
    seen: dict[str, tuple[Any, str]] = {}
    wanted = set(rules) if rules is not None else None
    for f in report.ranked():
        if wanted is not None and f.rule not in wanted:
            continue
        for fld, value in (f.edit or {}).items():
            seen.setdefault(fld, (value, f.rule))
    return [(fld, v, r) for fld, (v, r) in seen.items()]


def fix_config(cfg: RunConfig, report: Report, rules=None) -> RunConfig:
    """A new, validated RunConfig with the report's config edits applied (cfg is not changed)."""
    return apply_fixes(cfg, report, rules)[0]


def apply_fixes(cfg: RunConfig, report: Report, rules=None) -> tuple[RunConfig, list[tuple[str, Any, str]]]:
    """What `ftwizard check --fix` does, for any caller: the corrected config (validated; `cfg`
    unchanged) and the edits made as (field, value, rule), so a screen can say what changed.
    `rules=None` applies every fixable finding; `rules=[finding.rule]` just that one."""
    data = cfg.to_dict()
    edits = planned_edits(report, rules)
    for fld, value, _ in edits:
        node = data
        *parents, leaf = fld.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return RunConfig.model_validate(data), edits
