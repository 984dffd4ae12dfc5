"""`fix_config`: a corrected copy of a config from the findings that are config edits.

Only settings change (never data files, never the original config). When two findings
edit the same field, the more severe (then the earlier rule) wins: the memory fix for
an error beats a warning's wish for a longer max length.
"""

from __future__ import annotations

from typing import Any

from ftwizard.config import RunConfig
from ftwizard.preflight.report import Report


def planned_edits(report: Report) -> list[tuple[str, Any, str]]:
    """(field, new value, rule) for every edit that `fix_config` would apply, in order."""
    seen: dict[str, tuple[Any, str]] = {}
    for f in report.ranked():
        for fld, value in (f.edit or {}).items():
            seen.setdefault(fld, (value, f.rule))
    return [(fld, v, r) for fld, (v, r) in seen.items()]


def fix_config(cfg: RunConfig, report: Report) -> RunConfig:
    """A new, validated RunConfig with the report's config edits applied (cfg is not changed)."""
    data = cfg.to_dict()
    for fld, value, _ in planned_edits(report):
        node = data
        *parents, leaf = fld.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return RunConfig.model_validate(data)
