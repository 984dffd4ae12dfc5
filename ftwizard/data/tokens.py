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
    if base == EMBEDDED:
        import sys

        from ftwizard.models.embedded import ensure_cached

        source = str(ensure_cached(log=lambda msg: print(msg, file=sys.stderr)))
        # The embedded model's tokenizer is a plain fast tokenizer (what AutoTokenizer returns for it);
        # loading the class directly skips AutoTokenizer's import of torch (~3 s of CPU).
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(source, local_files_only=True)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = Path(base).expanduser()
    local = path.exists()
    from ftwizard.models.resolve import looks_like_path

    if not local and looks_like_path(base):
        raise UserError("model folder not found", where=base,
                        fix="give an existing folder (holding tokenizer.json), a hub id already in the cache "
                            "(owner/name), or --model embedded")
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


# GPT-2's pre-tokenizer pattern, used by ByteLevel(use_regex=True).
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


# The same pattern with the letter alternative first and ASCII classes: identical cuts on
# ASCII text, and stdlib re runs it ~2x faster than the regex module runs the original.
_GPT2_ASCII = r""" ?[A-Za-z]+|'(?:s|t|re|ve|m|ll|d)| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"""


def _word_splitter(backend):
    """A Python function cutting text where the tokenizer's pre-tokenizer does, or None.

    Byte-level BPE never merges across pre-tokenizer words, so a text's token count is
    the sum of its words' counts, and words repeat (Zipf): counting each distinct word
    once is ~4x faster than encoding every text (the tokenizers' regex pre-tokenizer
    dominates its cost). Only for the two common layouts (GPT-2 style ByteLevel, and a
    Split regex followed by ByteLevel, as in Llama 3 and Qwen); anything else uses full encodes.
    """
    import json
    import re

    import regex

    try:
        model = type(backend.model).__name__
        pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer is not None else {}
    except Exception:
        return None
    if backend.normalizer is not None or model != "BPE":
        return None
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        full = regex.compile(_GPT2_PATTERN).findall
        ascii_ = re.compile(_GPT2_ASCII).findall
        odd = re.compile(r"[\x1c-\x1f]").search  # ASCII that re and the tokenizer may class differently

        def split(text: str) -> list[str]:
            return ascii_(text) if text.isascii() and not odd(text) else full(text)

        return split
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (len(steps) == 2 and steps[0].get("type") == "Split" and steps[0].get("behavior") == "Isolated"
                and not steps[0].get("invert") and "Regex" in (steps[0].get("pattern") or {})
                and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)
                and not steps[1].get("add_prefix_space")):
            try:
                return regex.compile(steps[0]["pattern"]["Regex"]).findall
            except regex.error:
                return None
    return None


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte-to-character table, which ByteLevel applies to each word before BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


_BYTE_TO_UNICODE = _bytes_to_unicode()
_CONTENT = r"""(?:content['"]?\]?|content\b)"""


def _reads_content(template: str) -> bool:
    """Whether a template transforms or tests message text (`| trim`, `.split(`, `'</think>' in content`).

    Such templates render each row through Jinja: splicing contents into a skeleton would
    differ from the real render on rows the spot checks miss (Llama 3 trims every turn).
    """
    import re

    return bool(re.search(_CONTENT + r"\s*\|(?!\s*(?:string|safe)\b)", template)
                or re.search(_CONTENT + r"\s*\.\s*\w+\s*\(", template)
                or re.search(r"\bin\s+(?:message|m|msg|messages\[[^\]]+\])\s*(?:\.content\b|\[['\"]content['\"]\])", template)
                or re.search(r"\bin\s+content\b", template))


class TokenCounter:
    """Counts tokens of conversations (chat template applied) and of raw text, in batches.

    Two shortcuts, each checked against transformers' own path and dropped if it ever
    disagrees: (1) the template is rendered once per sequence of roles with placeholder
    contents (a "skeleton") and the real contents are spliced in, instead of running Jinja
    per row; checked on the first rows and on every 97th row after; (2) the text is cut at
    special tokens (which the tokenizer never merges across) and each piece is counted
    once, so the system prompt repeated on every row is tokenised once; checked on the
    first rows against a whole-text encode and `apply_chat_template(tokenize=True)`;
    (3) within pieces, each distinct pre-tokenizer word is counted once (`_word_splitter`),
    spot-checked against a whole-text encode on every 97th row.
    """

    def __init__(self, tokenizer):
        import re

        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self._backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer of a fast tokenizer
        self._compiled = None
        self._verified = False
        self._use_reference = False
        self._skeletons: dict[tuple, list[str] | None] = {}
        self._use_skeletons = not _reads_content(getattr(tokenizer, "chat_template", None) or "")
        self._seen = 0
        self._extra = {}
        self._piece_cache: dict[str, int] = {}
        specials = sorted({t for t in getattr(tokenizer, "all_special_tokens", []) if t}
                          | {str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values()}, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in specials) + ")") if specials else None
        self._use_pieces = self._split is not None and self._backend is not None
        self._words = _word_splitter(self._backend) if self._use_pieces else None
        self._word_cache: dict[str, int] = {}
        self._checked = 0
        if self.has_template:
            try:
                from transformers.utils.chat_template_utils import _compile_jinja_template

                self._compiled = _compile_jinja_template(tokenizer.chat_template)
                self._extra = dict(tokenizer.special_tokens_map)
            except Exception:  # a template only transformers' own path understands
                self._compiled = None
        self.eos = getattr(tokenizer, "eos_token", None)

    # -------------------------------------------------------------- rendering
    def _render_one(self, conversation: list[dict]) -> str:
        if self._compiled is not None:
            try:
                return self._compiled.render(messages=conversation, add_generation_prompt=False, **self._extra)
            except Exception:
                self._compiled = None
        return self.tokenizer.apply_chat_template(conversation, tokenize=False)

    def _skeleton(self, roles: tuple) -> list[str] | None:
        if roles not in self._skeletons:
            marks = [f"\x00\x01{i}\x01\x00" for i in range(len(roles))]
            try:
                text = self._render_one([{"role": r, "content": m} for r, m in zip(roles, marks)])
            except Exception:
                text = ""
            parts, rest = [], text
            for m in marks:
                if rest.count(m) != 1:
                    parts = None
                    break
                before, rest = rest.split(m)
                parts.append(before)
            if parts is not None:
                parts.append(rest)
            self._skeletons[roles] = parts
        return self._skeletons[roles]

    def render_many(self, conversations: list[list[dict]]) -> list[str]:
        """Each conversation rendered with the chat template, exactly as `apply_chat_template` does."""
        if not self.has_template:
            raise UserError(
                "the model's tokenizer has no chat template, so chat data cannot be rendered",
                fix="give the run a template (data.chat_template: auto gives a base model ChatML; "
                    "`--chat-template` on the data commands)",
            )
        out = []
        for c in conversations:
            self._seen += 1
            if _uses_tools(c):  # tool schemas and calls are not in `content`: no skeleton, the real template
                from ftwizard.data.template import render

                out.append(render(self.tokenizer, c))
                continue
            sk = self._skeleton(tuple(m["role"] for m in c)) if self._use_skeletons else None
            if sk is None:
                out.append(self._render_one(c))
                continue
            pieces = [sk[0]]
            for m, after in zip(c, sk[1:]):
                pieces.append(m["content"])
                pieces.append(after)
            text = "".join(pieces)
            if self._seen <= _VERIFY_ROWS or self._seen % 97 == 0:
                real = self._render_one(c)
                if real != text:  # the template looks at the content: render every row from now on
                    self._use_skeletons = False
                    text = real
            out.append(text)
        return out

    # -------------------------------------------------------------- counting
    def _encode_lengths(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self._backend is not None:
            if len(texts) < 256:  # waking the Rust thread pool costs milliseconds a call: not worth it for a few
                return [len(self._backend.encode(t, add_special_tokens=False).ids) for t in texts]
            return [len(e.ids) for e in self._backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _piece_lengths(self, texts: list[str]) -> list[int]:
        """Token counts from the pieces between special tokens and, where the tokenizer allows,
        from the words its pre-tokenizer would cut: each distinct word is encoded once."""
        split = self._split.split
        words_of = self._words
        cache = self._word_cache if words_of is not None else self._piece_cache
        per_text: list[list[str]] = []
        specials: list[int] = []
        missing: set[str] = set()
        for t in texts:
            parts = split(t)
            specials.append(len(parts) // 2)  # odd positions are the special tokens (one token each)
            units: list[str] = []
            for p in parts[0::2]:
                if p:
                    if words_of is not None:
                        units.extend(words_of(p))
                    else:
                        units.append(p)
            per_text.append(units)
            missing.update(set(units).difference(cache))
        if missing:
            todo = list(missing)
            if len(cache) + len(todo) > 500_000:
                cache.clear()  # bounded; frequent words come back at once
            if words_of is not None:  # a pre-tokenizer word goes straight to the BPE model, byte-mapped
                tokenize, table = self._backend.model.tokenize, _BYTE_TO_UNICODE
                counts = [len(tokenize("".join([table[b] for b in u.encode()]))) for u in todo]
            else:
                counts = self._encode_lengths(todo)
            for u, n in zip(todo, counts):
                cache[u] = n
        get = cache.__getitem__
        return [n_sp + sum(map(get, units)) for n_sp, units in zip(specials, per_text)]

    def count_conversations(self, conversations: list[list[dict]]) -> list[int]:
        """Tokens of each conversation exactly as the trainer tokenises it."""
        if not conversations:
            return []
        if self._use_reference:
            return [self._reference(c) for c in conversations]
        texts = self.render_many(conversations)
        if not self._verified:
            n = min(_VERIFY_ROWS, len(texts))
            reference = [self._reference(c) for c in conversations[:n]]
            if self._encode_lengths(texts[:n]) != reference:
                self._use_reference = True  # the rendering shortcut disagreed: transformers' own path from now on
                return [self._reference(c) for c in conversations]
            if self._use_pieces and self._piece_lengths(texts[:n]) != reference:
                self._use_pieces = False
            self._verified = True
        if not self._use_pieces:
            return self._encode_lengths(texts)
        counts = self._piece_lengths(texts)
        check = [i for i in range(len(texts)) if (self._checked + i) % 97 == 0]
        self._checked += len(texts)
        if check and self._encode_lengths([texts[i] for i in check]) != [counts[i] for i in check]:
            self._use_pieces = False  # a spot check disagreed: whole-text encoding from now on
            return self._encode_lengths(texts)
        return counts

    def count_texts(self, texts: list[str]) -> list[int]:
        """Tokens of raw-text rows as the trainer encodes them: special tokens added, eos appended."""
        if not texts:
            return []
        eos_id = getattr(self.tokenizer, "eos_token_id", None)
        if self._backend is not None:
            ids = [e.ids for e in self._backend.encode_batch_fast(texts, add_special_tokens=True)]
        else:
            ids = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        return [len(x) + (1 if eos_id is not None and (not x or x[-1] != eos_id) else 0) for x in ids]

    def _reference(self, conversation: list[dict]) -> int:
        tools = getattr(conversation, "tools", None) or None  # ftwizard.data.tools.Conversation
        out = self.tokenizer.apply_chat_template(list(conversation), tools=tools, tokenize=True)
        ids = out["input_ids"] if hasattr(out, "keys") else out
        return len(ids)


def _uses_tools(conversation) -> bool:
    from ftwizard.data.tools import uses_tools

    return uses_tools(conversation)
