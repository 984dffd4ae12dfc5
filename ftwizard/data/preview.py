"""Preview one row exactly as the model will see it: chat template applied, trained tokens marked.

Returns plain data (`Rendered.segments`: text pieces with a `trained` flag) so the CLI
(Rich) and the wizard (Textual) draw the same thing without this module knowing either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ftwizard.data.checks import check_row
from ftwizard.data.loading import Record, iter_records
from ftwizard.data.template import Rendered, Segment, TemplateError, assistant_token_mask
from ftwizard.errors import UserError


@dataclass
class Preview:
    row: int
    fmt: str | None
    messages: list[dict] | None
    rendered: Rendered | None
    problems: list[str] = field(default_factory=list)
    rejected: Rendered | None = None  # a preference pair: prompt + rejected answer (rendered is prompt + chosen)


def find_record(path: Path, row: int) -> Record:
    """The record with this row number (the JSONL line, or the record index for other kinds)."""
    if row < 1:
        raise UserError(f"row numbers start at 1, got {row}", code=2)
    last = 0
    for rec in iter_records(path):
        if rec.row == row:
            return rec
        if rec.row > row:
            raise UserError(f"line {row} is blank", where=f"{path}:{row}", fix=f"try row {rec.row}")
        last = rec.row
    raise UserError(f"there is no row {row}", where=str(path), fix=f"the last row is {last}" if last else "the file has no rows")


def render_text_row(tokenizer, text: str) -> Rendered:
    """A raw-text row: trained on every token, with the eos token the trainer appends."""
    eos = getattr(tokenizer, "eos_token", None) or ""
    full = text + eos
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    return Rendered(full, list(ids), [True] * len(ids), [Segment(full, True)], [])


def preview_messages(tokenizer, messages: list[dict]) -> Rendered:
    return assistant_token_mask(tokenizer, messages)


def _preview_preference(row: int, fmt: str, value, tokenizer, system_prompt, problems: list[str]) -> Preview:
    """A pair as the preference trainers see it: prompt + chosen (rendered) and prompt + rejected; a KTO row's
    completion. The answers are the scored tokens."""
    from ftwizard.data.preference import PairError, normalise_row

    try:
        kind, norm = normalise_row(value, fmt, system_prompt)
    except PairError as e:
        return Preview(row, fmt, None, None, problems + [f"{e.rule}: {e}" + (f" ({e.field})" if e.field else "")])
    first = norm["chosen"] if kind == "pairs" else norm["completion"]
    messages = norm["prompt"] + first
    try:
        rendered = assistant_token_mask(tokenizer, messages)
        rejected = assistant_token_mask(tokenizer, norm["prompt"] + norm["rejected"]) if kind == "pairs" else None
    except TemplateError as e:
        return Preview(row, fmt, messages, None, problems + [f"template.error: {e}"])
    if kind == "unpaired":
        problems = problems + [f"label: {'desirable' if norm['label'] else 'undesirable'} (KTO)"]
    return Preview(row, fmt, messages, rendered, problems, rejected)


def preview_row(path: Path | str, row: int, tokenizer, system_prompt: str | None = None) -> Preview:
    rec = find_record(Path(path), row)
    problems = [f"{p.rule}: {p.message}" for p in rec.problems]
    if rec.value is None and problems:
        return Preview(row, None, None, None, problems)
    res = check_row(rec.value, system_prompt)
    problems += [f"{p.rule}: {p.message}" + (f" ({p.field})" if p.field else "") for p in res.problems]
    if res.fmt == "text":
        return Preview(row, "text", None, render_text_row(tokenizer, rec.value["text"]), problems)
    if res.fmt in ("preference", "kto"):
        return _preview_preference(row, res.fmt, rec.value, tokenizer, system_prompt, problems)
    if res.messages is None:
        return Preview(row, res.fmt, None, None, problems)
    try:
        rendered = assistant_token_mask(tokenizer, res.messages)
    except TemplateError as e:
        return Preview(row, res.fmt, res.messages, None, problems + [f"template.error: {e}"])
    return Preview(row, res.fmt, res.messages, rendered, problems)
