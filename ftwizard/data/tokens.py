"""Exact token counts: the base model's tokenizer applied to the chat-templated text.

Counting is what the trainer will see, never characters/4. It is also the most
expensive part of lint, so it is batched: conversations are rendered with the chat
template (the compiled Jinja template, called directly: it skips per-call overhead in
`apply_chat_template`), then tokenised in batches by the Rust tokenizer on all cores.
The shortcut is checked against `apply_chat_template(tokenize=True)` on the first rows
of every file; if they ever disagree, the slow, reference path is used instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ftwizard.errors import UserError

EMBEDDED = "embedded"
_VERIFY_ROWS = 16


def load_tokenizer(base: str = EMBEDDED, trust_remote_code: bool = False):
    """The tokenizer of a base model: "embedded", a local folder, or a hub id already in the cache."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if base == EMBEDDED:
        from ftwizard.models.embedded import ensure_cached

        import sys

        source = str(ensure_cached(log=lambda msg: print(msg, file=sys.stderr)))
        local = True
    else:
        path = Path(base).expanduser()
        local = path.exists()
        if local and not path.is_dir():
            raise UserError("the model path is a file, not a model folder", where=base, fix="pass the folder holding tokenizer.json")
        source = str(path) if local else base
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        if local:
            raise UserError(
                f"cannot load a tokenizer from this folder: {str(e).splitlines()[0]}", where=source,
                fix="the folder needs tokenizer.json or tokenizer_config.json with its vocabulary",
            ) from None
        raise UserError(
            f"the tokenizer of {base!r} is not in the local Hugging Face cache (ftwizard works offline)",
            where=base,
            fix=f"download it once where there is network (`hf download {base}`), pass a local folder, "
            "or use --model embedded",
        ) from None


class TokenCounter:
    """Counts tokens of conversations (chat template applied) and of raw text, in batches."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self._backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer of a fast tokenizer
        self._compiled = None
        self._verified = False
        self._use_reference = False
        self._extra = {}
        if self.has_template:
            try:
                from transformers.utils.chat_template_utils import _compile_jinja_template

                self._compiled = _compile_jinja_template(tokenizer.chat_template)
                self._extra = dict(tokenizer.special_tokens_map)
            except Exception:  # a template only transformers' own path understands
                self._compiled = None
        self.eos = getattr(tokenizer, "eos_token", None)

    def render_many(self, conversations: list[list[dict]]) -> list[str]:
        if not self.has_template:
            raise UserError(
                "the model's tokenizer has no chat template, so chat data cannot be rendered",
                fix="use an instruct/chat model, or a base model with a chat template added",
            )
        if self._compiled is not None:
            try:
                return [self._compiled.render(messages=c, add_generation_prompt=False, **self._extra) for c in conversations]
            except Exception:
                self._compiled = None
        return [self.tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]

    def _encode_lengths(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self._backend is not None:
            return [len(e.ids) for e in self._backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def count_conversations(self, conversations: list[list[dict]]) -> list[int]:
        """Tokens of each conversation exactly as the trainer tokenises it."""
        if not conversations:
            return []
        if self._use_reference:
            return [self._reference(c) for c in conversations]
        counts = self._encode_lengths(self.render_many(conversations))
        if not self._verified:
            sample = conversations[:_VERIFY_ROWS]
            if all(self._reference(c) == n for c, n in zip(sample, counts)):
                self._verified = True
            else:  # the shortcut disagreed with transformers: use the reference path from now on
                self._use_reference = True
                return [self._reference(c) for c in conversations]
        return counts

    def count_texts(self, texts: list[str]) -> list[int]:
        """Tokens of raw-text rows, with the eos token the trainer appends."""
        extra = 1 if self.eos else 0
        return [n + extra for n in self._encode_lengths(texts)]

    def _reference(self, conversation: list[dict]) -> int:
        out = self.tokenizer.apply_chat_template(conversation, tokenize=True)
        ids = out["input_ids"] if hasattr(out, "keys") else out
        return len(ids)
