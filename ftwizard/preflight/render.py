"""The report as plain text for a terminal: a summary line, then findings, errors first."""

from __future__ import annotations

import textwrap

from ftwizard.preflight.report import Report
from ftwizard.preflight.rules import ERROR, INFO, WARNING

_LABEL = {ERROR: "ERROR", WARNING: "warn ", INFO: "info "}


def _gib(n) -> str:
    return f"{n / 1024**3:.1f} GiB"


def summary_line(report: Report) -> str:
    f = report.facts
    parts = [f"{f.get('model')} ({f.get('method')})"]
    tgt = f.get("target") or {}
    if tgt.get("name"):
        parts.append(f"on {tgt['name']}")
    elif tgt.get("kind") == "none":
        parts.append("on no GPU")
    train, ev = f.get("train"), f.get("eval")
    if train:
        parts.append(f"{train['valid_rows']:,} train rows" + (f", {ev['valid_rows']:,} eval" if ev else ""))
    if f.get("steps") is not None:
        parts.append(f"{f['steps']} steps, {f['passes']:g} passes")
    if f.get("peak_bytes") is not None:
        mem = tgt.get("memory_bytes")
        parts.append(f"peak ~{_gib(f['peak_bytes'])}" + (f" of {_gib(mem)} ({f['verdict'].replace('_', ' ')})" if mem else ""))
    if f.get("walltime"):  # measured on this machine (ftwizard.hardware.walltime)
        parts.append(f["walltime"]["text"])
    elif f.get("time_s"):
        t = f["time_s"]
        when = f"~{t / 3600:.1f} h" if t >= 3600 else f"~{max(1, round(t / 60))} min"
        parts.append(when + (f", ${f['cost']:.2f}" if f.get("cost") is not None else ""))
    return "pre-flight: " + " · ".join(parts)


def render(report: Report, *, infos: bool = True, width: int = 100) -> str:
    lines = [summary_line(report)]
    shown = [x for x in report.ranked() if infos or x.severity != INFO]
    for x in shown:
        d = x.to_dict()
        head = f"{_LABEL[x.severity]} {x.rule}: "
        lines.append(textwrap.fill(d["message"], width, initial_indent=head, subsequent_indent=" " * 8))
        if x.severity != INFO:
            lines.append(textwrap.fill(d["why"], width, initial_indent="        why: ", subsequent_indent=" " * 13))
        lines.append(textwrap.fill(d["fix"], width, initial_indent="        fix: ", subsequent_indent=" " * 13))
        if x.file and x.rows:
            rows = ", ".join(map(str, x.rows[:8])) + (" ..." if (x.count or 0) > 8 else "")
            lines.append(f"        rows: {rows} in {x.file}")
    for s in report.skipped:
        lines.append(f"skipped: {s}")
    c = {s: len(report.of(s)) for s in (ERROR, WARNING, INFO)}
    verdict = "ready to train" if report.ok else "NOT ready: a run like this cannot work"
    lines.append(f"{c[ERROR]} error(s), {c[WARNING]} warning(s), {c[INFO]} note(s): {verdict} "
                 f"({report.elapsed_s:.1f} s)")
    return "\n".join(lines)
