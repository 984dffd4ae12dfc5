"""The costly, row-independent part of lint, one batch at a time.

Token counts, the PII scan, exact-duplicate keys and MinHash signatures depend on a row
alone; what needs the whole file stays in the Linter, which merges each batch's result
in row order. Kept apart so that the per-row work can be measured and moved on its own.
Two spawned worker processes were tried and dropped: on the 2-core box they cost ~60 %
more CPU in total (each must import transformers and unpickle the tokenizer, and batches
are pickled both ways) and were slower in wall time under load (30 000 rows: 31 s vs 20-25 s).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from ftwizard.data.dedup import NearDuplicates, dedup_text, exact_key
from ftwizard.data.loading import snippet

Item = tuple[int, list | None, str | None]  # (row, messages or None, raw text or None)


@dataclass
class BatchResult:
    rows: list[int]
    lengths: list[int | None] = field(default_factory=list)    # per row; None when not counted
    template_errors: list[tuple[int, str]] = field(default_factory=list)
    pii: list[tuple[int, str, str, str, str]] = field(default_factory=list)  # (row, kind, field, masked, context)
    keys: list[bytes] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)              # the text compared for duplicates and leakage
    sig: np.ndarray | None = None
    bands: np.ndarray | None = None


class BatchWorker:
    def __init__(self, tokenizer=None, pii: bool = True, dedup: bool = True, near_threshold: float = 0.75):
        self.counter = None
        if tokenizer is not None:
            from ftwizard.data.tokens import TokenCounter

            self.counter = TokenCounter(tokenizer)
        self.pii = pii
        self.near = NearDuplicates(near_threshold) if dedup else None
        self.system_pii: dict[str, list] = {}

    def run(self, items: list[Item]) -> BatchResult:
        res = BatchResult([row for row, _, _ in items])
        res.keys = [exact_key(m if m is not None else [{"role": "text", "content": t}]) for _, m, t in items]
        res.texts = [t if m is None else dedup_text(m) for _, m, t in items]
        if self.counter is not None:
            self._count(items, res)
        if self.pii:
            for row, msgs, text in items:
                self._scan(row, msgs, text, res)
        if self.near is not None:
            res.sig, res.bands = self.near.signatures(res.texts)
        return res

    def _count(self, items: list[Item], res: BatchResult) -> None:
        lengths: dict[int, int] = {}
        chats = [(row, m) for row, m, _ in items if m is not None]
        texts = [(row, t) for row, m, t in items if m is None]
        if chats and not self.counter.has_template:
            res.template_errors.append((chats[0][0], "the model's tokenizer has no chat template, so chat rows cannot be "
                                        "rendered or counted; use an instruct model or add a chat template"))
            chats = []
        if chats:
            try:
                lengths.update(zip((r for r, _ in chats), self.counter.count_conversations([m for _, m in chats])))
            except Exception:  # a row the template rejects: count row by row to find it
                for row, m in chats:
                    try:
                        lengths[row] = self.counter.count_conversations([m])[0]
                    except Exception as e:
                        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                        res.template_errors.append((row, f"the chat template cannot render this row: {msg}"))
        if texts:
            lengths.update(zip((r for r, _ in texts), self.counter.count_texts([t for _, t in texts])))
        res.lengths = [lengths.get(row) for row in res.rows]

    def _scan(self, row: int, messages: list | None, text: str | None, res: BatchResult) -> None:
        from ftwizard.data.pii import find_pii

        if messages is None:
            parts = [("text", text)]
        else:
            parts = []
            for i, m in enumerate(messages):
                if m["role"] == "system":  # the same prompt on every row: scan it once
                    cached = self.system_pii.get(m["content"])
                    if cached is None:
                        cached = find_pii(m["content"])
                        if len(self.system_pii) < 100:
                            self.system_pii[m["content"]] = cached
                    if not cached:
                        continue
                parts.append((f"messages[{i}].content", m["content"]))
        # one scan over the row's turns joined by a separator no pattern can cross
        sep = "\n\x00\n"
        starts, pos = [], 0
        for _, t in parts:
            starts.append(pos)
            pos += len(t) + len(sep)
        seen = set()
        for m in find_pii(sep.join(t for _, t in parts)):
            k = bisect_right(starts, m.start) - 1
            if (m.kind, k) in seen:
                continue
            seen.add((m.kind, k))
            fieldname, t = parts[k]
            s, e = m.start - starts[k], m.end - starts[k]
            res.pii.append((row, m.kind, fieldname, m.masked(), snippet(t[max(0, s - 30):s] + m.masked() + t[e:e + 30])))
