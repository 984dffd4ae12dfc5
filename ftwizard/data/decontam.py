"""Decontamination: eval rows whose text also appears in the training data.

The eval set is small, so it is indexed (its word 8-grams and exact conversation
hashes) and the training file streams past it: memory follows the eval set, not the
training set. An eval row is flagged when it is an exact copy of a training row, or
when at least half of its 8-grams occur in training rows (8-grams: long enough that
shared boilerplate rarely matches, short enough to catch light paraphrase).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ftwizard.data.checks import check_row
from ftwizard.data.dedup import _PUNCT, _word_hashes, dedup_text, exact_key
from ftwizard.data.loading import iter_records

N = 8
OVERLAP = 0.5
_MULT = (np.arange(1, N + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)


def ngram_hashes(text: str, n: int = N) -> np.ndarray:
    """Hashes of the word n-grams of `text` (lower case, punctuation ignored); the whole text when shorter."""
    h = _word_hashes(text.lower().translate(_PUNCT).split())
    if len(h) == 0:
        return h
    if len(h) < n:
        return np.array([(h * _MULT[: len(h)]).sum(dtype=np.uint64)], dtype=np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(h, n)
    return (windows * _MULT).sum(axis=1, dtype=np.uint64)


class Decontaminator:
    def __init__(self, eval_path: Path, system_prompt: str | None = None):
        self.eval_path = Path(eval_path)
        self.exact: dict[bytes, int] = {}
        self.grams: dict[int, list[int]] = {}
        self.size: dict[int, int] = {}
        self.found: dict[int, set[int]] = {}
        self.first_train: dict[int, int] = {}
        self.exact_hits: dict[int, int] = {}
        for rec in iter_records(self.eval_path):
            if rec.value is None:
                continue
            res = check_row(rec.value, system_prompt)
            if res.messages is not None:
                text, key = dedup_text(res.messages), exact_key(res.messages)
            elif res.fmt == "text":
                text = rec.value["text"]
                key = exact_key([{"role": "text", "content": text}])
            else:
                continue
            self.exact.setdefault(key, rec.row)
            g = np.unique(ngram_hashes(text))
            self.size[rec.row] = len(g)
            for x in g.tolist():
                self.grams.setdefault(x, []).append(rec.row)
        self._all = np.fromiter(self.grams.keys(), dtype=np.uint64, count=len(self.grams))
        self._all.sort()

    @property
    def eval_rows(self) -> int:
        return len(self.size)

    def add_train(self, row: int, key: bytes, text: str) -> None:
        e = self.exact.get(key)
        if e is not None:
            self.exact_hits.setdefault(e, row)
        if not len(self._all):
            return
        g = ngram_hashes(text)
        if not len(g):
            return
        idx = np.searchsorted(self._all, g)
        idx[idx >= len(self._all)] = 0
        hits = g[self._all[idx] == g]
        for x in hits.tolist():
            for erow in self.grams[x]:
                self.found.setdefault(erow, set()).add(x)
                self.first_train.setdefault(erow, row)

    def findings(self) -> list[dict]:
        out = []
        for erow in sorted(set(self.exact_hits) | set(self.found)):
            if erow in self.exact_hits:
                t = self.exact_hits[erow]
                out.append({"row": erow, "related": [t],
                            "message": f"eval row {erow} is an exact copy of training row {t}"})
                continue
            share = len(self.found[erow]) / max(self.size.get(erow, 1), 1)
            if share >= OVERLAP:
                t = self.first_train[erow]
                out.append({"row": erow, "related": [t],
                            "message": f"{share:.0%} of the {N}-word sequences of eval row {erow} also occur in the "
                                       f"training data (first in training row {t})"})
        return out
