"""Turn a data file into token ids and a loss mask, exactly as the model will see it.

We tokenise ourselves rather than let TRL do it, because TRL's assistant-only loss
needs `{% generation %}` markers that most chat templates (the embedded model's among
them) lack. The assistant spans come from rendering the conversation with the model's
own chat template: the text added between `messages[:i]` + generation prompt and
`messages[:i+1]` is the assistant turn, end-of-turn token included, so the model learns
to stop. TRL then builds labels from the `assistant_masks` column.

Tool-calling rows (ftwizard.data.tools) render with `tools=` through the same template: the
assistant's calls are trained (they sit inside its turn), tool results never are (they are
not assistant turns). A template that cannot show tools is refused before any row is encoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ftwizard.data.formats import ConversionError, detect_format, to_messages
from ftwizard.data.rules import RULES
from ftwizard.data.tools import conversion_offset, lint_conversation, require_tool_template, uses_tools
from ftwizard.errors import UserError


def iter_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, record) pairs, through the same loader as `ftwizard lint`.

    Training needs clean rows, so the first unreadable one stops with its location; the
    full diagnosis of a file is `ftwizard lint`.
    """
    from ftwizard.data.loading import iter_records

    for rec in iter_records(Path(path)):
        if rec.value is None or not rec.parsed:
            why = rec.problems[0].message if rec.problems else "the row could not be read"
            raise UserError(f"{Path(path).name} row {rec.row}: {why}", where=f"{path}:{rec.row}",
                            fix=f"run `ftwizard lint {path}` for every problem, or `ftwizard data fix --drop-invalid`")
        yield rec.row, rec.value


def encode_conversation(tokenizer, messages: list[dict[str, str]], assistant_only: bool) -> dict[str, list[int]]:
    """Token ids and the loss mask, from the same rendering that `ftwizard data show` previews."""
    from ftwizard.data.template import TemplateError, assistant_token_mask

    try:
        rendered = assistant_token_mask(tokenizer, messages)
    except TemplateError as e:
        raise ConversionError(str(e), "messages") from None
    mask = [int(m) for m in rendered.trained_mask] if assistant_only else [1] * rendered.tokens
    return {"input_ids": rendered.input_ids, "assistant_masks": mask}


def encode_text(tokenizer, text: str) -> dict[str, list[int]]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = ids + [tokenizer.eos_token_id]
    return {"input_ids": ids, "assistant_masks": [1] * len(ids)}


def truncate_rows(rows: list[dict[str, list[int]]], max_length: int | None) -> tuple[list[dict[str, list[int]]], int]:
    """Keep the first `max_length` tokens of every row (TRL's keep_start) and drop rows left with
    nothing to learn; returns (rows, dropped).

    Done here rather than by TRL because padding-free batches need it: TRL enforces
    max_length only on padded batches or packing."""
    if not max_length:
        return rows, 0
    out = []
    for r in rows:
        if len(r["input_ids"]) > max_length:
            r = {k: v[:max_length] for k, v in r.items()}
        if any(r["assistant_masks"]):
            out.append(r)
    return out, len(rows) - len(out)


def encode_file(path: Path, tokenizer, *, fmt: str = "auto", system_prompt: str | None = None,
                assistant_only: bool = True) -> list[dict[str, list[int]]]:
    """Encode every row of a file; a row that cannot be used stops with its location."""
    out = []
    file_fmt = None if fmt == "auto" else fmt
    template_checked = False
    for row, rec in iter_rows(path):
        row_fmt = file_fmt or detect_format(rec)
        where = f"{path}:{row}"
        if row_fmt is None:
            raise UserError(f"{Path(path).name} row {row}: matches no known data format", where=where,
                            fix=f"run `ftwizard lint {path}` to see every problem")
        if file_fmt is None:
            file_fmt = row_fmt  # the first row decides; later rows must agree
        elif row_fmt != file_fmt and fmt == "auto":
            raise UserError(f"{Path(path).name} row {row}: format {row_fmt} differs from the file's ({file_fmt})",
                            where=where, fix=f"`ftwizard data fix {path} --to messages -o NEW` converts every row")
        try:
            if row_fmt == "text":
                out.append(encode_text(tokenizer, rec["text"]))
            else:
                msgs = to_messages(rec, row_fmt, system_prompt=system_prompt)
                if not any(m["role"] == "assistant" for m in msgs):
                    raise ConversionError("conversation has no assistant turn to learn from", "messages")
                if uses_tools(msgs):  # tool-calling rows: a template that shows tools, and well-formed calls
                    if not template_checked:
                        require_tool_template(tokenizer, where, row)
                        template_checked = True
                    bad = [p for p in lint_conversation(msgs, row_fmt, conversion_offset(rec, row_fmt, msgs))
                           if RULES[p.rule].severity == "error"]
                    if bad:
                        raise ConversionError(bad[0].message, bad[0].field)
                out.append(encode_conversation(tokenizer, msgs, assistant_only))
        except ConversionError as e:
            raise UserError(f"{Path(path).name} row {row}, field {e.field or '?'}: {e}", where=where,
                            fix=f"run `ftwizard lint {path}` to see every problem") from None
    if not out:
        raise UserError(f"{path} has no rows", fix="check the file")
    return out
