"""Fixes and splits that write new files and never touch the original.

Every output is written to a temporary file beside it and renamed into place, so a
crash leaves either the old output or the new one; an existing output is replaced only
with `force`, and the input itself never (even with `force`). Next to each output goes
a report (JSON) that maps every output row to its input row and lists what was dropped
or changed and why. Files are streamed twice (once to decide, once to write), so memory
follows the per-row state, not the file. Rows of a JSONL file that need no change are
copied byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ftwizard.data.checks import check_row
from ftwizard.data.dedup import DEFAULT_THRESHOLD, NearDuplicates, dedup_text, exact_key
from ftwizard.data.loading import Record, check_readable, iter_records
from ftwizard.errors import UserError
from ftwizard.fileio import atomic_writer

# Raw-level problems that make a row unusable (the rest are repaired on the way out).
_FATAL = {"json.invalid", "csv.columns", "json.too_deep", "row.too_large"}
_SHOW = 5


@dataclass
class FixReport:
    source: str
    source_sha256: str
    outputs: dict[str, str]
    rows_in: int = 0
    rows_out: dict[str, int] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    map: dict[str, list[int]] = field(default_factory=dict)  # output name -> input row of each output row
    options: dict[str, Any] = field(default_factory=dict)
    report_path: str | None = None
    counts: Counter = field(default_factory=Counter)  # per rule: redact.phone, drop.duplicate, convert.messages...
    diffs: list[dict[str, Any]] = field(default_factory=list)  # row, field, before, after (redactions)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1, "source": self.source, "source_sha256": self.source_sha256, "options": self.options,
            "outputs": self.outputs, "rows_in": self.rows_in, "rows_out": self.rows_out,
            "dropped_count": len(self.dropped), "changed_count": len(self.changed),
            "counts": dict(sorted(self.counts.items())), "diffs": self.diffs,
            "dropped": self.dropped, "changed": self.changed, "map": self.map,
        }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_output(src: Path, out: Path, force: bool) -> None:
    if out.suffix.lower() != ".jsonl":
        raise UserError("the output must be a .jsonl file", where=str(out), fix="name the output something.jsonl", code=2)
    if out.resolve() == src.resolve() or (out.exists() and os.path.samefile(out, src)):
        raise UserError("the output would overwrite the input file", where=str(out),
                        fix="write to a new file; ftwizard never modifies your data in place")
    if out.exists() and not force:
        raise UserError("the output file already exists", where=str(out), fix="choose another name, or pass --force to replace it")
    if out.exists() and out.is_dir():
        raise UserError("the output is a folder", where=str(out), fix="name a .jsonl file")


def _classify(rec: Record, to_messages: bool, system_prompt: str | None):
    """(reason it is invalid or None, messages or None, format)."""
    fatal = next((p for p in rec.problems if p.rule in _FATAL), None)
    if fatal is not None:
        return f"{fatal.rule}: {fatal.message}", None, None
    res = check_row(rec.value, system_prompt if to_messages else None)
    if res.fmt in ("preference", "kto"):  # preference rows stay as they are: checked, never converted (h14b)
        if to_messages:
            return "format.preference: preference rows cannot become messages (train them with a preference " \
                   "objective)", None, res.fmt
        from ftwizard.data.preference import PairError, normalise_row

        try:
            normalise_row(rec.value, res.fmt)
        except PairError as e:
            return f"{e.rule}: {e}", None, res.fmt
        return None, None, res.fmt
    if res.fmt == "text":
        if to_messages:
            return "format.text: raw text rows cannot become messages", None, res.fmt
        if not isinstance(rec.value.get("text"), str) or not rec.value["text"].strip():
            return "content.empty: text is empty", None, res.fmt
        return None, None, res.fmt
    if res.messages is None:
        p = res.problems[0]
        return f"{p.rule}: {p.message}", None, res.fmt
    return None, res.messages, res.fmt


def _invalid_error(src: Path, invalid: list[tuple[int, str]], total: int) -> UserError:
    shown = "; ".join(f"row {r}: {why}" for r, why in invalid[:_SHOW])
    more = f" (and {len(invalid) - _SHOW} more)" if len(invalid) > _SHOW else ""
    return UserError(
        f"{len(invalid):,} of {total:,} rows cannot be trained on: {shown}{more}",
        where=str(src), fix="fix those rows, or pass --drop-invalid to leave them out (the report lists each one)",
    )


def _redact_value(value: Any, changes: Counter, diffs: list | None = None, where: str = "") -> Any:
    """`value` with PII redacted; counts kinds in `changes` and notes (field, before, after) in `diffs`."""
    from ftwizard.data.pii import redact

    if isinstance(value, str):
        new, kinds = redact(value)
        changes.update(kinds)
        if kinds and diffs is not None:
            diffs.append({"field": where or "(row)", "before": value, "after": new, "kinds": kinds})
        return new
    if isinstance(value, list):
        return [_redact_value(v, changes, diffs, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _redact_value(v, changes, diffs, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    return value


class _Discard:
    """A write sink for dry runs: the same code path as a real fix, nothing written."""

    def write(self, b: bytes) -> int:
        return len(b)


def _text_for_dedup(rec: Record, messages) -> tuple[bytes, str]:
    if messages is not None:
        return exact_key(messages), dedup_text(messages)
    if not isinstance(rec.value.get("text"), str):  # a preference row: the whole normalised pair or KTO row
        from ftwizard.data.preference import normalise_row

        _, norm = normalise_row(rec.value)
        flat = [dict(m, role=f"{k}:{m['role']}") for k, part in norm.items() if isinstance(part, list) for m in part]
        flat.append({"role": "label", "content": str(norm.get("label", ""))})
        return exact_key(flat), dedup_text(flat)
    text = rec.value["text"]
    return exact_key([{"role": "text", "content": text}]), text


def fix_file(src: Path | str, out: Path | str, *, dedup: str | None = None, drop_invalid: bool = False,
             redact_pii: bool = False, to_messages: bool = False, force: bool = False,
             system_prompt: str | None = None, near_threshold: float = DEFAULT_THRESHOLD,
             dry_run: bool = False) -> FixReport:
    """Write a fixed copy of `src` to `out` (JSONL) and a report beside it (`out` + .report.json).

    With `dry_run`, everything is decided and counted exactly as for real (per rule in
    `counts`, each redaction's before/after in `diffs`) and nothing is written.
    """
    src, out = Path(src), Path(out)
    if dedup not in (None, "exact", "near"):
        raise UserError(f"unknown dedup mode {dedup!r}", fix="use --dedup exact or --dedup near", code=2)
    src = check_readable(src)  # before hashing it: a pipe or a folder is refused, never opened
    _check_output(src, out, force or dry_run)
    report_path = out.with_name(out.name + ".report.json")
    digest = sha256_file(src)

    # pass 1: what is invalid, what duplicates what
    invalid: list[tuple[int, str]] = []
    firsts: dict[bytes, int] = {}
    dup_of: dict[int, tuple[int, float | None]] = {}
    near = NearDuplicates(near_threshold) if dedup == "near" else None
    exact_of: dict[int, int] = {}
    total = 0
    batch_rows, batch_texts = [], []
    for rec in iter_records(src):
        total += 1
        why, messages, _ = _classify(rec, to_messages, system_prompt)
        if why is not None:
            invalid.append((rec.row, why))
            continue
        if dedup:
            key, text = _text_for_dedup(rec, messages)
            first = firsts.setdefault(key, rec.row)
            if first != rec.row:
                dup_of[rec.row] = (first, None)
                exact_of[rec.row] = first
            elif near is not None:
                batch_rows.append(rec.row)
                batch_texts.append(text)
                if len(batch_rows) >= 1024:
                    near.add(batch_rows, batch_texts)
                    batch_rows, batch_texts = [], []
    if total == 0:
        raise UserError("the file has no rows", where=str(src))
    if invalid and not drop_invalid:
        raise _invalid_error(src, invalid, total)
    if near is not None:
        near.add(batch_rows, batch_texts)
        for p in near.pairs(exact_of):
            root = p.other
            while root in dup_of:  # keep the first row of a chain of near-duplicates
                root = dup_of[root][0]
            dup_of.setdefault(p.row, (root, p.similarity))
    del firsts, exact_of

    # pass 2: write
    rep = FixReport(str(src), digest, {"output": str(out)}, rows_in=total, report_path=str(report_path),
                    options={"dedup": dedup, "drop_invalid": drop_invalid, "redact_pii": redact_pii,
                             "to_messages": to_messages, "system_prompt": system_prompt}, dry_run=dry_run)
    bad = dict(invalid)
    mapping: list[int] = []
    from contextlib import nullcontext

    with (nullcontext(_Discard()) if dry_run else atomic_writer(out)) as f:
        for rec in iter_records(src):
            if rec.row in bad:
                rep.dropped.append({"row": rec.row, "reason": bad[rec.row]})
                rep.counts["drop.invalid"] += 1
                continue
            if rec.row in dup_of:
                other, sim = dup_of[rec.row]
                reason = f"exact duplicate of row {other}" if sim is None else f"near-duplicate of row {other} (similarity {sim:.2f})"
                rep.dropped.append({"row": rec.row, "reason": reason, "duplicate_of": other})
                rep.counts["drop.dup_exact" if sim is None else "drop.dup_near"] += 1
                continue
            changes: list[str] = []
            for p in rec.problems:
                if p.rule == "encoding.invalid_utf8":
                    changes.append("bytes that were not UTF-8 replaced with U+FFFD")
                    rep.counts["encoding.replace_invalid_utf8"] += 1
                elif p.rule == "encoding.bom":
                    changes.append("byte order mark removed")
                    rep.counts["encoding.remove_bom"] += 1
            value = rec.value
            if to_messages:
                _, messages, fmt = _classify(rec, True, system_prompt)
                if fmt != "messages" or set(value) - {"tools"} != {"messages"} or messages != value["messages"]:
                    changes.append(f"converted from {fmt} to messages")
                    rep.counts["convert.to_messages"] += 1
                value = {"messages": list(messages)}
                if getattr(messages, "tools", None):  # tool rows keep their tool schemas (ftwizard.data.tools)
                    value["tools"] = messages.tools
            if redact_pii:
                kinds: Counter = Counter()
                row_diffs: list = []
                value = _redact_value(value, kinds, row_diffs)
                if kinds:
                    changes.append("redacted " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
                    for k, n in kinds.items():
                        rep.counts[f"redact.{k}"] += n
                    for d in row_diffs:
                        if len(rep.diffs) < 1000:
                            rep.diffs.append({"row": rec.row, **d})
            mapping.append(rec.row)
            if changes:
                rep.changed.append({"row": rec.row, "out_row": len(mapping), "changes": changes})
            if not changes and rec.raw is not None and not any(p.rule == "encoding.invalid_utf8" for p in rec.problems):
                f.write(rec.raw + b"\n")  # untouched JSONL rows are copied byte for byte
            else:
                f.write(orjson.dumps(value) + b"\n")
    rep.rows_out = {"output": len(mapping)}
    rep.map = {"output": mapping}
    if not dry_run:
        _write_report(report_path, rep)
    else:
        rep.report_path = None
    return rep


def _write_report(path: Path, rep: FixReport) -> None:
    with atomic_writer(path) as f:
        f.write(orjson.dumps(rep.to_dict(), option=orjson.OPT_INDENT_2))


# --------------------------------------------------------------------------- split
_LABEL_KEYS = ("label", "labels", "category", "class", "intent", "sentiment", "topic", "urgency")


def label_of(messages: list[dict] | None) -> str | None:
    """A class label for stratified splits: a short final answer, or a label-like field of a JSON answer."""
    if not messages or messages[-1]["role"] != "assistant":
        return None
    answer = messages[-1]["content"].strip()
    if answer[:1] == "{":
        try:
            value = orjson.loads(answer)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            for k in _LABEL_KEYS:
                v = value.get(k)
                if isinstance(v, (str, int, bool)):
                    return f"{k}={v}"
    if len(answer) <= 40 and "\n" not in answer:
        return answer
    return None


def split_file(src: Path | str, out_dir: Path | str | None = None, *, eval_fraction: float = 0.1, seed: int = 0,
               stratify: bool = False, force: bool = False, drop_invalid: bool = False) -> FixReport:
    """Write `<stem>.train.jsonl` and `<stem>.eval.jsonl` (and `<stem>.split.json`, the report).

    Exact duplicates stay on the same side, so the split itself cannot leak eval rows into training.
    """
    src = check_readable(Path(src))
    if not 0.0 < eval_fraction < 1.0:
        raise UserError(f"--eval-fraction must be between 0 and 1, got {eval_fraction}",
                        fix="use 0.1 to 0.2 (guidance: hold out 10-20 %)", code=2)
    out_dir = Path(out_dir) if out_dir is not None else src.parent
    stem = src.name.split(".")[0] or "data"
    outs = {"train": out_dir / f"{stem}.train.jsonl", "eval": out_dir / f"{stem}.eval.jsonl"}
    for p in outs.values():
        _check_output(src, p, force)
    report_path = out_dir / f"{stem}.split.json"
    digest = sha256_file(src)

    invalid: list[tuple[int, str]] = []
    group_of: dict[int, int] = {}
    groups: dict[int, list[int]] = defaultdict(list)
    group_label: dict[int, str | None] = {}
    firsts: dict[bytes, int] = {}
    total = 0
    for rec in iter_records(src):
        total += 1
        why, messages, _ = _classify(rec, False, None)
        if why is not None:
            invalid.append((rec.row, why))
            continue
        key, _ = _text_for_dedup(rec, messages)
        g = firsts.setdefault(key, rec.row)
        group_of[rec.row] = g
        groups[g].append(rec.row)
        if g == rec.row:
            group_label[g] = label_of(messages) if stratify else None
    if total == 0:
        raise UserError("the file has no rows", where=str(src))
    if invalid and not drop_invalid:
        raise _invalid_error(src, invalid, total)
    valid = len(group_of)
    if valid < 2:
        raise UserError(f"only {valid} usable row(s): nothing to split", where=str(src))
    if stratify:
        unlabeled = sum(len(groups[g]) for g, lab in group_label.items() if lab is None)
        if unlabeled > valid / 2:
            raise UserError("cannot stratify: the assistant outputs do not look like class labels",
                            where=str(src), fix="split without --stratify", code=2)

    rng = random.Random(seed)
    eval_groups: set[int] = set()
    strata: dict[str | None, list[int]] = defaultdict(list)
    for g in groups:
        strata[group_label[g] if stratify else None].append(g)
    for label in sorted(strata, key=lambda x: (x is None, str(x))):
        members = strata[label]
        rng.shuffle(members)
        size = sum(len(groups[g]) for g in members)
        target = max(1, round(size * eval_fraction)) if not stratify or size >= 2 else 0
        taken = 0
        for g in members:
            if taken >= target:
                break
            if taken + len(groups[g]) > target and taken > 0:
                continue
            eval_groups.add(g)
            taken += len(groups[g])
    if len(eval_groups) == len(groups):  # never leave training empty
        eval_groups.discard(next(iter(eval_groups)))

    rep = FixReport(str(src), digest, {k: str(v) for k, v in outs.items()}, rows_in=total, report_path=str(report_path),
                    options={"eval_fraction": eval_fraction, "seed": seed, "stratify": stratify, "drop_invalid": drop_invalid})
    bad = dict(invalid)
    maps: dict[str, list[int]] = {"train": [], "eval": []}
    with atomic_writer(outs["train"]) as ft, atomic_writer(outs["eval"]) as fe:
        handles = {"train": ft, "eval": fe}
        for rec in iter_records(src):
            if rec.row in bad:
                rep.dropped.append({"row": rec.row, "reason": bad[rec.row]})
                continue
            side = "eval" if group_of[rec.row] in eval_groups else "train"
            maps[side].append(rec.row)
            if rec.raw is not None and not rec.problems:
                handles[side].write(rec.raw + b"\n")
            else:
                if rec.problems:
                    rep.changed.append({"row": rec.row, "out": side, "out_row": len(maps[side]),
                                        "changes": [p.message for p in rec.problems]})
                handles[side].write(orjson.dumps(rec.value) + b"\n")
    rep.rows_out = {k: len(v) for k, v in maps.items()}
    rep.map = maps
    _write_report(report_path, rep)
    return rep
