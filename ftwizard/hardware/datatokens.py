"""Token lengths of a data file, counted the way training will see them.

Uses the data layer's counter (`ftwizard.data.tokens`: the base model's own tokenizer
and chat template) so the estimate, lint and the trainer agree on every count.
Imports transformers: called from command handlers only, never from `estimate()`.
"""

from __future__ import annotations

from pathlib import Path

from ftwizard.errors import UserError


def data_lengths(path: Path | str, model: str = "embedded", *, fmt: str = "auto",
                 system_prompt: str | None = None, chat_template: str = "auto") -> list[int]:
    """Token count of every usable row (rows that cannot be converted are skipped; lint reports them)."""
    from ftwizard.data.formats import ConversionError, detect_format, to_messages
    from ftwizard.data.loading import iter_records
    from ftwizard.data.tokens import TokenCounter, load_tokenizer

    from ftwizard.data.chat_templates import apply_template, needs_template

    tok = load_tokenizer(model)
    apply_template(tok, chat_template, needed=needs_template(path, fmt))  # as the trainer renders the rows
    counter = TokenCounter(tok)
    chats: list[list[dict]] = []
    texts: list[str] = []
    for rec in iter_records(Path(path)):
        if not isinstance(rec.value, dict):
            continue
        f = detect_format(rec.value) if fmt == "auto" else fmt
        if f == "text":
            texts.append(rec.value["text"])
            continue
        if f is None or f == "preference":
            continue
        try:
            chats.append(to_messages(rec.value, f, system_prompt=system_prompt))
        except ConversionError:
            continue
    lengths = counter.count_conversations(chats) + counter.count_texts(texts)
    if not lengths:
        raise UserError("no usable rows in the data file", where=str(path),
                        fix=f"run `ftwizard lint {path}` to see what is wrong")
    return lengths
