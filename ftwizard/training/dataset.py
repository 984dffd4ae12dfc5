"""Turn a data file into token ids and a loss mask, exactly as the model will see it.

We tokenise ourselves rather than let TRL do it, because TRL's assistant-only loss
needs `{% generation %}` markers that most chat templates (the embedded model's among
them) lack. The assistant spans come from rendering the conversation with the model's
own chat template: the text added between `messages[:i]` + generation prompt and
`messages[:i+1]` is the assistant turn, end-of-turn token included, so the model learns
to stop. TRL then builds labels from the `assistant_masks` column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ftwizard.data.formats import ConversionError, detect_format, to_messages
from ftwizard.errors import UserError


def iter_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, record) pairs; row is the 1-based line for JSONL, the record index otherwise.

    Training needs clean rows, so the first unreadable one stops with its location; the
    full diagnosis of a file is `ftwizard lint`.
    """
    import orjson

    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}", where="data.train / data.eval", fix="check the path in the config")
    suffix = path.suffix.lower()
    lint_hint = f"run `ftwizard lint {path}` for every problem in the file"
    if suffix in (".jsonl", ".ndjson"):
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if not line.strip():
                    continue
                try:
                    yield n, orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise UserError(f"{path.name} line {n}: not valid JSON ({e})", where=f"{path}:{n}", fix=lint_hint) from None
    elif suffix == ".json":
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as e:
            raise UserError(f"{path.name}: not valid JSON ({e})", where=str(path), fix=lint_hint) from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else None
        if not isinstance(data, list):
            raise UserError(f"{path.name}: expected a JSON array of rows (or an object holding one)", where=str(path), fix=lint_hint)
        yield from enumerate(data, 1)
    elif suffix in (".csv", ".parquet"):
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        table = pcsv.read_csv(path) if suffix == ".csv" else pq.read_table(path)
        for i, rec in enumerate(table.to_pylist(), 1):
            for key, value in list(rec.items()):  # JSON-encoded columns (messages in a CSV cell)
                if isinstance(value, str) and key in ("messages", "conversations") and value.lstrip().startswith("["):
                    try:
                        rec[key] = orjson.loads(value)
                    except orjson.JSONDecodeError:
                        pass
            yield i, rec
    else:
        raise UserError(f"unsupported data file type {suffix!r}: {path}", fix="use .jsonl, .json, .csv or .parquet")


def assistant_char_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The templated text and the character spans of each assistant turn (end-of-turn included)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if full.startswith(through) and through.startswith(before):
            spans.append((len(before), len(through)))
            cursor = len(through)
            continue
        # Template not prefix-stable (it rewrites earlier turns): find the content itself.
        start = full.find(m["content"], cursor)
        if start < 0:
            raise ConversionError("the chat template drops or rewrites this assistant turn", f"messages[{i}].content")
        end = start + len(m["content"])
        eos = tokenizer.eos_token or ""
        if eos and full.startswith(eos, end):
            end += len(eos)
        spans.append((start, end))
        cursor = end
    return full, spans


def encode_conversation(tokenizer, messages: list[dict[str, str]], assistant_only: bool) -> dict[str, list[int]]:
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if not assistant_only:
        return {"input_ids": ids, "assistant_masks": [1] * len(ids)}
    mask = [0] * len(ids)
    j = 0
    for k, (s, e) in enumerate(enc["offset_mapping"]):
        while j < len(spans) and spans[j][1] <= s:
            j += 1
        if j < len(spans) and s < spans[j][1] and e > spans[j][0]:
            mask[k] = 1
    return {"input_ids": ids, "assistant_masks": mask}


def encode_text(tokenizer, text: str) -> dict[str, list[int]]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = ids + [tokenizer.eos_token_id]
    return {"input_ids": ids, "assistant_masks": [1] * len(ids)}


def encode_file(path: Path, tokenizer, *, fmt: str = "auto", system_prompt: str | None = None,
                assistant_only: bool = True) -> list[dict[str, list[int]]]:
    """Encode every row of a file; a row that cannot be used stops with its location."""
    out = []
    file_fmt = None if fmt == "auto" else fmt
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
                out.append(encode_conversation(tokenizer, msgs, assistant_only))
        except ConversionError as e:
            raise UserError(f"{Path(path).name} row {row}, field {e.field or '?'}: {e}", where=where,
                            fix=f"run `ftwizard lint {path}` to see every problem") from None
    if not out:
        raise UserError(f"{path} has no rows", fix="check the file")
    return out
