"""The pre-flight report: findings ranked by severity, the facts they rest on, and JSON.

`Report.to_dict()` is the documented JSON of `ftwizard check --json` and of
`preflight.json` in a run folder (schema "ftwizard.preflight/1"):

    schema        "ftwizard.preflight/1"
    ok            true when there is no error
    counts        {error, warning, info}
    findings      [{rule, severity, title, message, why, fix, field, file, rows, count,
                    threshold, source, section, edit, advice}], errors first
    facts         what the rules looked at (rows, steps, passes, token lengths, target, ...)
    estimate      the memory/time/cost estimate (schema ftwizard.estimate/1) or null
    skipped       checks that could not run, with the reason
    elapsed_s     wall time of the check
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftwizard.preflight.rules import ERROR, INFO, SEVERITY_ORDER, WARNING, rule, rule_order

SCHEMA = "ftwizard.preflight/1"


@dataclass
class Finding:
    """One problem: what is wrong (message), why it matters, and the concrete change (fix).

    `edit` maps config field paths ("training.learning_rate") to corrected values; it is
    what `fix_config` applies. `rows` are 1-based row numbers in `file` (first few only;
    `count` is exact)."""

    rule: str
    severity: str
    message: str
    fix: str
    field: str | None = None
    file: str | None = None
    rows: list[int] | None = None
    count: int | None = None
    edit: dict[str, Any] | None = None
    advice: list[dict] | None = None
    why: str | None = None

    def to_dict(self) -> dict[str, Any]:
        r = rule(self.rule)
        return {
            "rule": self.rule, "severity": self.severity, "title": r.title, "message": self.message,
            "why": self.why or r.why, "fix": self.fix, "field": self.field, "file": self.file, "rows": self.rows,
            "count": self.count, "threshold": r.threshold, "source": r.source, "section": r.section,
            "edit": self.edit, "advice": self.advice,
        }


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    # exact token lengths of the usable rows (not in the JSON: the wall-time estimate reads them)
    train_lengths: list[int] | None = field(default=None, repr=False)
    eval_lengths: list[int] | None = field(default=None, repr=False)

    def add(self, f: Finding) -> Finding:
        self.findings.append(f)
        return f

    def ranked(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (SEVERITY_ORDER[f.severity], rule_order(f.rule)))

    def of(self, severity: str) -> list[Finding]:
        return [f for f in self.ranked() if f.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        return self.of(ERROR)

    @property
    def warnings(self) -> list[Finding]:
        return self.of(WARNING)

    @property
    def infos(self) -> list[Finding]:
        return self.of(INFO)

    @property
    def ok(self) -> bool:
        return not self.errors

    def rules_hit(self, severity: str | None = None) -> set[str]:
        return {f.rule for f in self.findings if severity is None or f.severity == severity}

    def by_rule(self, rule_id: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == rule_id]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        """The inverse of `to_dict` (a report read back from JSON: `check --json`, preflight.json, or the
        gate's isolated check). Optional top-level `train_lengths` / `eval_lengths` are restored too."""
        names = Finding.__dataclass_fields__
        findings = [Finding(**{k: v for k, v in f.items() if k in names}) for f in d.get("findings") or []]
        return cls(findings=findings, facts=dict(d.get("facts") or {}), estimate=d.get("estimate"),
                   skipped=list(d.get("skipped") or []), elapsed_s=float(d.get("elapsed_s") or 0.0),
                   train_lengths=d.get("train_lengths"), eval_lengths=d.get("eval_lengths"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "counts": {s: len(self.of(s)) for s in (ERROR, WARNING, INFO)},
            "findings": [f.to_dict() for f in self.ranked()],
            "facts": self.facts,
            "estimate": self.estimate,
            "skipped": list(self.skipped),
            "elapsed_s": round(self.elapsed_s, 3),
        }
