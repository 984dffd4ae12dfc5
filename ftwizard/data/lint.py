"""Lint a fine-tuning data file: every problem, with its rule, row, field and a fix.

One streaming pass. Each row is parsed and checked on its own (loading, checks); rows
that can be trained on are gathered in batches for the costly work (exact token counts,
PII, duplicate signatures, eval overlap); what needs the whole file (the file's format,
near-duplicate pairs, label balance, system prompts) is decided at the end from compact
per-row state. Findings are capped per rule (the count is always exact), so memory
stays bounded however broken the file is.
"""

from __future__ import annotations

import math

import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ftwizard.data import stats as stats_mod
from ftwizard.data.batchwork import BatchWorker
from ftwizard.data.checks import check_row
from ftwizard.data.dedup import DEFAULT_THRESHOLD, NearDuplicates
from ftwizard.data.formats import PREFERENCE_FORMATS, user_field
from ftwizard.data.pii import LABEL as PII_LABEL
from ftwizard.data.guidance import GENERIC_MINIMUM, rate_count
from ftwizard.data.loading import Record, check_readable, file_kind, iter_records, snippet
from ftwizard.data.rules import ERROR, INFO, RULES, WARNING

REPORT_VERSION = 1
BATCH = 512
EOS_CHECK_ROWS = 32
LABEL_MAX_CHARS = 40
LABEL_MAX_DISTINCT = 50
JSON_FIELD_MAX_DISTINCT = 20
IMBALANCE_RATIO = 10.0


@dataclass(slots=True)
class Finding:
    """One problem. `row` is 1-based (the line for JSONL, the record otherwise); `file` is set
    only when the finding is about another file (the eval file)."""

    rule: str
    severity: str
    row: int | None
    field: str | None
    message: str
    hint: str
    snippet: str | None = None
    related: list[int] | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"rule": self.rule, "severity": self.severity, "row": self.row, "field": self.field,
             "message": self.message, "hint": self.hint, "snippet": self.snippet}
        if self.related:
            d["related"] = self.related
        if self.file:
            d["file"] = self.file
        return d


@dataclass
class LintReport:
    """The result of linting one file; `to_dict()` is the documented JSON report (docs/lint-report.md)."""

    path: str
    kind: str
    format: str | None
    formats: dict[str, int]
    rows: int
    valid_rows: int
    findings: list[Finding]
    counts: dict[str, int]
    stats: dict[str, Any]
    model: str | None = None
    max_length: int | None = None
    elapsed_s: float = 0.0

    def _of(self, severity: str) -> list[Finding]:
        return sorted((f for f in self.findings if f.severity == severity), key=lambda f: (f.rule, f.file or "", f.row or 0))

    @property
    def errors(self) -> list[Finding]:
        return self._of(ERROR)

    @property
    def warnings(self) -> list[Finding]:
        return self._of(WARNING)

    @property
    def infos(self) -> list[Finding]:
        return self._of(INFO)

    def rules_hit(self, severity: str | None = None) -> dict[str, int]:
        """rule id -> how many times it fired (exact, including findings not listed)."""
        return {r: n for r, n in self.counts.items() if severity is None or self._severity_of(r) == severity}

    def _severity_of(self, rule_id: str) -> str:
        for f in self.findings:
            if f.rule == rule_id:
                return f.severity
        return RULES[rule_id].severity

    @property
    def error_count(self) -> int:
        return sum(n for r, n in self.counts.items() if self._severity_of(r) == ERROR)

    @property
    def exit_code(self) -> int:
        return 1 if self.error_count else 0

    def rows_with(self, rule_id: str) -> list[int]:
        return [f.row for f in self.findings if f.rule == rule_id and f.row is not None and not f.file]

    def to_dict(self) -> dict[str, Any]:
        listed = Counter(f.rule for f in self.findings)
        return {
            "version": REPORT_VERSION,
            "file": self.path,
            "kind": self.kind,
            "format": self.format,
            "formats": self.formats,
            "rows": self.rows,
            "valid_rows": self.valid_rows,
            "model": self.model,
            "max_length": self.max_length,
            "ok": self.exit_code == 0,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
            "infos": [f.to_dict() for f in self.infos],
            "counts": dict(sorted(self.counts.items())),
            "not_listed": {r: n - listed[r] for r, n in sorted(self.counts.items()) if n > listed[r]},
            "stats": self.stats,
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass
class LintOptions:
    tokenizer: Any = None              # a transformers tokenizer; None skips token counts and template checks
    model: str | None = None           # its name, for the report
    max_length: int | None = 512
    task_type: str | None = None
    as_eval: bool = False              # the file is a held-out set: no "too few to fine-tune", a resolution note instead
    eval_path: Path | None = None
    system_prompt: str | None = None   # added to rows without one, as the trainer does
    near_threshold: float = DEFAULT_THRESHOLD
    dedup: bool = True
    pii: bool = True
    max_per_rule: int = 200            # findings listed per rule; counts stay exact
    objective: str | None = None       # training.objective (sft, dpo, orpo, kto); None: not known (lint alone)


@dataclass(slots=True)
class _Valid:
    row: int
    fmt: str
    messages: list[dict] | None  # None for raw text rows
    text: str | None


class Linter:
    """Feed records, then `finish()`. Usable on any iterable of `Record` (the wizard streams with progress)."""

    def __init__(self, options: LintOptions | None = None, path: str = "", kind: str = "jsonl"):
        self.o = options or LintOptions()
        self.path = path
        self.kind = kind
        self.findings: list[Finding] = []
        self.counts: Counter[str] = Counter()
        self.rows = 0
        self.valid = 0
        self.formats: Counter[str] = Counter()
        self.format_rows: dict[str, list[int]] = {}
        self.unknown_keys: dict[str, list[int]] = {}  # key -> [count, first row]
        self.batch: list[_Valid] = []
        self.lengths = array("I")
        self.turns: Counter[int] = Counter()
        self.roles: Counter[str] = Counter()
        self.exact: dict[bytes, int] = {}
        self.exact_of: dict[int, int] = {}
        self.near = NearDuplicates(self.o.near_threshold) if self.o.dedup else None
        self.systems: dict[str, list] = {}  # system prompt -> [count, first row]
        self.no_system = [0, None]
        self.labels: Counter[str] = Counter()
        self.label_first: dict[str, int] = {}
        self.labels_possible = True
        self.json_outputs = 0
        self.json_failures: list[tuple[int, str]] = []
        self.json_failure_count = 0
        self.json_fields: dict[str, Counter] = {}
        self.eos_checked = 0
        self.eos_bad: list[tuple[int, str]] = []
        self.specials: list[str] = []
        self.decontam = None
        self.tool_stats = None                  # ftwizard.data.tools.ToolStats once a row uses tools
        self.tool_template = [None, 0, None]    # first tool row the template cannot render, how many, why
        from ftwizard.data.preference import PreferenceLint

        self.pref = PreferenceLint(self.add, self.o.system_prompt)
        self.t0 = time.perf_counter()
        self.worker = BatchWorker(self.o.tokenizer, self.o.pii, self.o.dedup, self.o.near_threshold)
        self.counter = self.worker.counter  # None without a tokenizer
        if self.o.tokenizer is not None:
            tok = self.o.tokenizer
            self.specials = sorted({t for t in getattr(tok, "all_special_tokens", []) if t and len(t) > 2}, key=len, reverse=True)
        if self.o.eval_path is not None:
            from ftwizard.data.decontam import Decontaminator

            self.decontam = Decontaminator(Path(self.o.eval_path))

    # ---------------------------------------------------------------- findings
    def add(self, rule_id: str, row: int | None, message: str, field: str | None = None, snippet_: str | None = None,
            related: list[int] | None = None, severity: str | None = None, file: str | None = None) -> None:
        self.counts[rule_id] += 1
        if self.counts[rule_id] <= self.o.max_per_rule:
            r = RULES[rule_id]
            self.findings.append(Finding(rule_id, severity or r.severity, row, field, message, r.hint, snippet_, related, file))

    # ---------------------------------------------------------------- per row
    def feed(self, records) -> None:
        for rec in records:
            self.feed_one(rec)

    def feed_one(self, rec: Record) -> None:
        self.rows += 1
        for p in rec.problems:
            self.add(p.rule, rec.row, p.message, p.field, p.snippet)
        if not rec.parsed:
            return
        result = check_row(rec.value, self.o.system_prompt)
        for p in result.problems:
            self.add(p.rule, rec.row, p.message, p.field, p.snippet)
        if result.fmt is None:
            return
        self.formats[result.fmt] += 1
        rows = self.format_rows.setdefault(result.fmt, [])
        if len(rows) < self.o.max_per_rule:
            rows.append(rec.row)
        for k in result.extra_keys:
            slot = self.unknown_keys.get(k)
            if slot is None:
                if len(self.unknown_keys) >= 50:  # rows keyed by ids or free text: enough to say so
                    continue
                slot = self.unknown_keys[k] = [0, rec.row]
            slot[0] += 1
        if result.fmt in PREFERENCE_FORMATS:  # pairs / KTO rows: their own rules (ftwizard.data.preference)
            norm = self.pref.feed(rec.row, rec.value, result.fmt)
            if norm is not None:
                self.valid += 1
                if self.counter is not None and self.counter.has_template:
                    self._pref_length(rec.row, norm)
            return
        if result.fmt == "text":
            text = rec.value["text"]
            if not text.strip():
                self.add("content.empty", rec.row, "text is empty", "text")
                return
            self.batch.append(_Valid(rec.row, "text", None, text))
        elif result.messages is not None:
            if self._tool_row(rec, result):  # tool-calling rows (ftwizard.data.tools); True: not renderable
                return
            self.batch.append(_Valid(rec.row, result.fmt, result.messages, None))
        else:
            return
        self.valid += 1
        if len(self.batch) >= BATCH:
            self._flush()

    def _tool_row(self, rec: Record, result) -> bool:
        """Tool rules and counts for a row that uses tools; True when the template cannot render it
        (reported once for the file at the end, instead of a template error on every row)."""
        from ftwizard.data import tools as tools_mod

        msgs = result.messages
        if not tools_mod.uses_tools(msgs):
            return False
        if self.tool_stats is None:
            self.tool_stats = tools_mod.ToolStats()
        self.tool_stats.add(msgs)
        offset = tools_mod.conversion_offset(rec.value, result.fmt, msgs)
        for p in tools_mod.lint_conversation(msgs, result.fmt, offset):
            self.add(p.rule, rec.row, p.message, p.field)
        if self.counter is None or not self.counter.has_template:
            return False
        problem = tools_mod.template_tool_problem(self.o.tokenizer)
        if problem is None:
            return False
        if self.tool_template[0] is None:
            self.tool_template = [rec.row, 0, problem]
        self.tool_template[1] += 1
        return True

    # ---------------------------------------------------------------- batches
    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        chats = [v for v in batch if v.messages is not None]
        for v in chats:
            self._row_semantics(v)
        if self.counter is not None and self.eos_checked < EOS_CHECK_ROWS:
            self._check_eos(chats[: EOS_CHECK_ROWS - self.eos_checked])
        self._batch_rows = {v.row: v for v in batch}  # to name PII fields in the row's own keys
        self._merge(self.worker.run([(v.row, v.messages, v.text) for v in batch]))

    def _merge(self, res) -> None:
        """Fold one batch's results into the file's state, in row order."""
        limit = self.o.max_length
        for row, msg in res.template_errors:
            self.add("template.error", row, msg)
        if self.counter is not None:
            for row, n in zip(res.rows, res.lengths):
                if n is None:
                    continue
                self.lengths.append(n)
                if limit and n > limit:
                    self.add("length.over_max", row, f"{n:,} tokens, over the max length of {limit:,}; "
                             f"the last {n - limit:,} tokens are cut off")
        pii = iter(res.pii)
        nxt = next(pii, None)
        near_mask = []
        for i, (row, key) in enumerate(zip(res.rows, res.keys)):
            first = self.exact.get(key)
            if first is None:
                self.exact[key] = row
            elif self.o.dedup:
                self.exact_of[row] = first
                self.add("dup.exact", row, f"row {row} is an exact duplicate of row {first}", related=[first])
            near_mask.append(first is None)
            while nxt is not None and nxt[0] == row:
                _, kind, fieldname, masked, ctx = nxt
                fieldname = self._user_field(row, fieldname)
                self.add(f"pii.{kind}", row, f"{PII_LABEL[kind]}: {masked}", fieldname, ctx)
                nxt = next(pii, None)
            if self.decontam is not None:
                self.decontam.add_train(row, key, res.texts[i])
        if self.near is not None and res.sig is not None:
            mask = np.asarray(near_mask, dtype=bool)
            self.near.add_signatures(np.asarray(res.rows)[mask], res.sig[mask], res.bands[mask])

    def _main_fmt(self) -> str | None:
        return self.formats.most_common(1)[0][0] if self.formats else None

    def _user_field(self, row: int, fieldname: str | None) -> str | None:
        """messages[i].content of a converted row -> the key the user's file has (see formats.user_field)."""
        v = getattr(self, "_batch_rows", {}).get(row)
        if v is None or not fieldname or not fieldname.startswith("messages[") or v.fmt == "messages":
            return fieldname
        try:
            i = int(fieldname[len("messages["):fieldname.index("]")])
        except ValueError:
            return fieldname
        return user_field(v.fmt, v.messages, i)

    def _check_eos(self, chats: list[_Valid]) -> None:
        from ftwizard.data.template import TemplateError, assistant_spans

        if not self.counter.has_template:
            return
        for v in chats:
            self.eos_checked += 1
            try:
                spans = assistant_spans(self.o.tokenizer, v.messages)
            except TemplateError as e:
                self.add("template.error", v.row, _first_line(e))
                continue
            for sp in spans:
                if not sp.closed:
                    self.eos_bad.append((v.row, user_field(v.fmt, v.messages, sp.message_index)))
                    break

    def _row_semantics(self, v: _Valid) -> None:
        msgs = v.messages
        self.turns[len(msgs)] += 1
        for m in msgs:
            self.roles[m["role"]] += 1
        system = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else None
        if system is None:
            self.no_system[0] += 1
            self.no_system[1] = self.no_system[1] or v.row
        elif len(self.systems) < 100 or system in self.systems:
            slot = self.systems.setdefault(system, [0, v.row])
            slot[0] += 1
        answer = msgs[-1]["content"] if msgs[-1]["role"] == "assistant" else None
        if answer is not None:
            self._output(v.row, answer.strip())
        if self.specials:
            for i, m in enumerate(msgs):
                c = m["content"]
                if "<" in c or "[" in c:
                    hit = next((t for t in self.specials if t in c), None)
                    if hit:
                        self.add("content.special_token", v.row, f"{m['role']} text contains the special token {hit}",
                                 user_field(v.fmt, v.messages, i), snippet(c, c.find(hit)))

    def _output(self, row: int, answer: str) -> None:
        if self.labels_possible:
            if len(answer) <= LABEL_MAX_CHARS and "\n" not in answer:
                self.labels[answer] += 1
                self.label_first.setdefault(answer, row)
                if len(self.labels) > LABEL_MAX_DISTINCT:
                    self.labels_possible = False
                    self.labels.clear()
            else:
                self.labels_possible = False
                self.labels.clear()
        body = _strip_fence(answer)
        if body[:1] in ("{", "["):
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                self.json_failure_count += 1
                if len(self.json_failures) < self.o.max_per_rule:
                    self.json_failures.append((row, f"{e.msg} at character {e.pos + 1}"))
                return
            self.json_outputs += 1
            if isinstance(value, dict):
                for k, val in value.items():
                    if isinstance(val, (str, bool, int)) and len(str(val)) <= LABEL_MAX_CHARS:
                        c = self.json_fields.setdefault(k, Counter())
                        if c is not None:
                            c[str(val)] += 1
                            self.label_first.setdefault(f"{k}={val}", row)
                            if len(c) > JSON_FIELD_MAX_DISTINCT:
                                self.json_fields[k] = None  # free text, not a label
        else:
            self.json_failure_count += 1
            if len(self.json_failures) < self.o.max_per_rule:
                self.json_failures.append((row, "not JSON"))

    # ---------------------------------------------------------------- the whole file
    def finish(self) -> LintReport:
        self._flush()
        fmt = self._file_format()
        self._keys_report(fmt)
        self._systems_report()
        self._labels_report()
        self._json_report()
        self._eos_report()
        if self.tool_template[0] is not None:
            from ftwizard.data.tools import template_name

            row, n, why = self.tool_template
            self.add("tools.template_unsupported", row, f"the chat template of {template_name(self.o.tokenizer)} cannot "
                     f"render tool calls ({why}); {n:,} tool row(s) cannot be trained or counted")
        self.pref.finish(self.o.objective)
        if self.near is not None:
            for p in self.near.pairs(self.exact_of):
                self.add("dup.near", p.row, f"row {p.row} is a near-duplicate of row {p.other} (similarity {p.similarity:.2f})",
                         related=[p.other])
        if self.decontam is not None:
            for f in self.decontam.findings():
                self.add("eval.overlap", f["row"], f["message"], related=f["related"], file=str(self.o.eval_path))
        if self.o.as_eval:
            self._eval_size_report(fmt)
        else:
            self._size_report(fmt)
        if self.counter is None and self.valid:
            self.add("tokens.skipped", None, "no tokenizer given: token lengths, the max-length check and the EOS check were skipped")
        stats = stats_mod.summarise(
            rows=self.rows, valid=self.valid, formats=dict(self.formats), turns=self.turns, roles=self.roles,
            lengths=self.lengths if self.counter is not None else None, max_length=self.o.max_length,
        )
        if getattr(self, "label_groups", None):
            stats["labels"] = self.label_groups
        if self.tool_stats is not None:
            stats["tools"] = self.tool_stats.to_dict()
        if self.pref.stats() is not None:
            stats["preference"] = self.pref.stats()
        return LintReport(
            path=self.path, kind=self.kind, format=fmt, formats=dict(self.formats), rows=self.rows, valid_rows=self.valid,
            findings=self.findings, counts=dict(self.counts), stats=stats, model=self.o.model,
            max_length=self.o.max_length, elapsed_s=time.perf_counter() - self.t0,
        )

    def _file_format(self) -> str | None:
        if self.rows == 0:
            self.add("file.empty", None, "the file has no rows")
            return None
        if not self.formats:
            return None
        fmt, _ = self.formats.most_common(1)[0]
        if fmt in PREFERENCE_FORMATS:
            self._objective_report(fmt)
        elif fmt == "text":
            self.add("format.text", self.format_rows[fmt][0], f"{self.formats[fmt]:,} rows of raw text: trained as plain text")
        for other, n in self.formats.items():
            if other == fmt:
                continue
            what = {"preference": "a preference pair", "kto": "an unpaired KTO row"}.get(other, f"{other} format")
            for row in self.format_rows[other]:
                self.add("format.mixed", row, f"row is {what} while the file is {fmt} ({self.formats[fmt]:,} rows)")
            if n > len(self.format_rows[other]):
                self.counts["format.mixed"] += n - len(self.format_rows[other])
        return fmt

    def _pref_length(self, row: int, norm: dict) -> None:
        """Tokens of the longer side (prompt + answer), as the preference trainers tokenise it; over the max length
        the end of that answer is cut off (TRL truncates keep_start)."""
        convs = ([norm["prompt"] + norm["chosen"], norm["prompt"] + norm["rejected"]] if "chosen" in norm
                 else [norm["prompt"] + norm["completion"]])
        try:
            n = max(self.counter.count_conversations(convs))
        except Exception as e:  # noqa: BLE001 - a template that rejects the row is a finding, not a crash
            self.add("template.error", row, _first_line(e))
            return
        self.lengths.append(n)
        tracked = getattr(self, "length_rows", None)  # the pre-flight's row-tracking linter (preflight/inputs.py)
        if isinstance(tracked, list) and getattr(self, "tracking", False):
            tracked.append(row)
        limit = self.o.max_length
        if limit and n > limit:
            side = "the longer side of the pair" if "chosen" in norm else "prompt + completion"
            self.add("length.over_max", row, f"{n:,} tokens ({side}), over the max length of {limit:,}; the last "
                     f"{n - limit:,} tokens of the answer are cut off")

    def _objective_report(self, fmt: str) -> None:
        """Preference data is an error only under an objective that cannot train it (the pre-flight says the same)."""
        n, row, obj = self.formats[fmt], self.format_rows[fmt][0], self.o.objective
        what = (f"{n:,} of {self.rows:,} rows are preference pairs (prompt/chosen/rejected)" if fmt == "preference" else
                f"{n:,} of {self.rows:,} rows are unpaired preference rows (prompt/completion/label)")
        wanted = "dpo (or orpo)" if fmt == "preference" else "kto"
        if obj == "sft":
            self.add("format.preference", row, f"{what}, but training.objective is sft: set training.objective: {wanted}")
        elif obj is None:
            self.add("format.preference", row, f"{what}: train them with training.objective: {wanted}", severity=INFO)
        elif fmt == "kto" and obj in ("dpo", "orpo"):
            self.add("pref.unpaired", row, f"{what}: {obj.upper()} needs prompt/chosen/rejected pairs; set "
                     "training.objective: kto")

    def _keys_report(self, fmt: str | None) -> None:
        for key, (n, first) in sorted(self.unknown_keys.items(), key=lambda kv: -kv[1][0]):
            self.add("keys.unknown", first, f"key {key!r} in {n:,} row(s) is not read by training (first at row {first})", key)

    def _systems_report(self) -> None:
        variants = sorted(self.systems.items(), key=lambda kv: -kv[1][0])
        total = sum(n for _, (n, _) in variants) + self.no_system[0]
        if len(variants) + (1 if self.no_system[0] else 0) <= 1 or total == 0:
            return
        main_text, (main_n, main_row) = variants[0] if variants else (None, (0, None))
        if self.no_system[0] > main_n:
            for text, (n, row) in variants:
                self.add("system.inconsistent", row, f"{n:,} row(s) have a system prompt while {self.no_system[0]:,} have none",
                         user_field(self._main_fmt(), None, 0), snippet(text))
            return
        for text, (n, row) in variants[1:10]:
            self.add("system.inconsistent", row, f"system prompt used by {n:,} row(s) differs from the one in {main_n:,} rows "
                     f"(first at row {main_row})", user_field(self._main_fmt(), None, 0), snippet(text))
        if self.no_system[0]:
            self.add("system.inconsistent", self.no_system[1], f"{self.no_system[0]:,} row(s) have no system prompt while "
                     f"{main_n:,} rows do", user_field(self._main_fmt(), None, 0))

    def _labels_report(self) -> None:
        groups: list[tuple[str, Counter, str]] = []  # (what, counts, prefix of label_first keys)
        if self.labels_possible and 2 <= len(self.labels) and self.valid >= 20:
            groups.append(("assistant output", self.labels, ""))
        for key, c in self.json_fields.items():
            if c is not None and len(c) >= 2 and sum(c.values()) >= 20 and sum(c.values()) >= 0.8 * self.json_outputs:
                groups.append((f"JSON field {key!r}", c, f"{key}="))
        # what looks like a class label, with its counts: the pre-flight's imbalance rule reads this
        self.label_groups = [{"what": what, "counts": dict(counter.most_common())} for what, counter, _ in groups]
        for what, counter, prefix in groups:
            common = counter.most_common()
            top, top_n = common[0]
            low, low_n = common[-1]
            if top_n / max(low_n, 1) >= IMBALANCE_RATIO:
                dist = ", ".join(f"{k!r}: {n:,}" for k, n in common[:8]) + (" ..." if len(common) > 8 else "")
                first = self.label_first.get(prefix + low)
                self.add("labels.imbalance", first,
                         f"{what} looks like a class label and is out of balance ({top!r} {top_n:,} vs {low!r} {low_n:,}): {dist}")

    def _json_report(self) -> None:
        attempts = self.json_outputs + self.json_failure_count
        if self.json_outputs < 2 or self.json_outputs < 0.5 * attempts:
            return  # most outputs are not JSON: nothing to hold them to
        for row, why in self.json_failures:
            self.add("output.json_invalid", row, f"the assistant output is not valid JSON ({why}) while "
                     f"{self.json_outputs:,} of {attempts:,} outputs are", user_field(self._main_fmt(), None, -1))
        if self.json_failure_count > len(self.json_failures):
            self.counts["output.json_invalid"] += self.json_failure_count - len(self.json_failures)

    def _eos_report(self) -> None:
        if not self.eos_bad:
            return
        from ftwizard.data.template import end_of_turn_markers, stop_tokens

        stops = stop_tokens(self.o.tokenizer)
        markers = end_of_turn_markers(self.o.tokenizer)
        row, fieldname = self.eos_bad[0]
        self.add("template.no_eos", row,
                 f"in {len(self.eos_bad)} of the first {self.eos_checked} rows checked, the chat template does not close the "
                 f"assistant turn with a stop token ({', '.join(stops) or 'no eos token set'}; markers seen: "
                 f"{', '.join(markers) or 'none'})", fieldname, related=[r for r, _ in self.eos_bad[1:20]] or None)

    def _eval_size_report(self, fmt: str | None) -> None:
        """How fine a difference a held-out set of this size can resolve (ftwizard eval's paired bootstrap):
        with two models disagreeing on ~30 % of rows, the 95 % interval's half-width is ~1.96 * sqrt(0.3 / n)."""
        if fmt in (None, "preference", "kto", "text") or self.valid == 0:
            return
        resolves = 1.96 * (0.3 / self.valid) ** 0.5
        for10 = int(math.ceil(0.3 * (1.96 / 0.10) ** 2 / 10) * 10)
        self.add("eval.size", None, f"{self.valid:,} held-out rows: differences smaller than about "
                 f"{resolves * 100:.0f} points between two models will read as inconclusive (about {for10} rows "
                 "resolve 10 points)", severity=INFO)

    def _size_report(self, fmt: str | None) -> None:
        if fmt in (None, "preference", "kto") or self.valid == 0:
            return
        rating, counts = rate_count(self.o.task_type, self.valid)
        if counts is None:
            if rating == "below_minimum":
                self.add("data.too_few", None, f"{self.valid:,} usable rows; fewer than a few hundred good examples is a poor "
                         f"reason to fine-tune (guidance: at least ~{GENERIC_MINIMUM}); pass --task-type for the table")
            return
        table = f"{counts.label}: minimum {counts.minimum:,}, good {counts.good:,}, excellent {counts.excellent:,}+ (guidance)"
        if rating == "below_minimum":
            self.add("data.too_few", None, f"{self.valid:,} usable rows, below the minimum for {counts.label.lower()}. {table}")
        elif rating == "minimum":
            self.add("data.too_few", None, f"{self.valid:,} usable rows: enough to start, below good. {table}", severity=INFO)


def _strip_fence(text: str) -> str:
    if text.startswith("```"):
        body = text.split("\n", 1)[1] if "\n" in text else ""
        return body.rsplit("```", 1)[0].strip()
    return text


def _first_line(e: BaseException) -> str:
    s = str(e)
    return s.splitlines()[0] if s else type(e).__name__


def lint_file(path: Path | str, options: LintOptions | None = None, progress=None) -> LintReport:
    """Lint one file (any supported kind). `progress(rows)` is called every few thousand rows."""
    path = check_readable(Path(path))
    kind = file_kind(path)
    linter = Linter(options, str(path), kind)
    cap = max(64 * (linter.o.max_length or 0), 1 << 18)  # rows far past the max length are not tokenised
    for rec in iter_records(path, kind, max_row_chars=cap):
        linter.feed_one(rec)
        if progress is not None and linter.rows % 5000 == 0:
            progress(linter.rows)
    return linter.finish()


__all__ = ["Finding", "LintOptions", "LintReport", "Linter", "lint_file"]
