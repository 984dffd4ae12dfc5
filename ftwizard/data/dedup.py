"""Duplicates: exact (a hash of the normalised conversation) and near (MinHash + LSH).

MinHash signatures come from rensa (Rust), computed for a whole batch from one flat
buffer of word-trigram hashes: measured ~34 us a chat row end to end (words, hashes,
signature), where datasketch's `MinHash(num_perm=128).update_batch` took ~380 us. The LSH banding is a sort over
(band key, row) done with numpy at the end instead of rensa's index, because lint must
say which rows pair up and rensa's bulk API only returns flags. Candidates are then
verified on their signatures, so the reported similarity is the MinHash estimate (128
permutations, standard error ~0.03) of the Jaccard similarity of word trigrams. Memory:
the low 16 bits of each of 128 minimums (a false match 1 in 65,536) and 32 band keys of
4 bytes per row: 384 bytes a row, 38 MB for 100,000 rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import orjson
import xxhash

NUM_PERM = 128
BANDS = 32  # 32 bands of 4: P(candidate) = 99.98 % at similarity 0.7, 5 % at 0.2
SEED = 1234
SHINGLE = 3
DEFAULT_THRESHOLD = 0.75
# Punctuation becomes a space, so "refund," and "refund" are the same word (translate+split
# is ~2x faster than a \w+ regex).
_PUNCT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)


def exact_key(messages: list[dict]) -> bytes:
    """16-byte digest of a conversation; whitespace at the ends of each turn does not count."""
    norm = [(m["role"], m["content"].strip()) if not m.get("tool_calls") else  # calls differ by their arguments
            (m["role"], m["content"].strip(), [c["function"]["name"] + orjson.dumps(c["function"]["arguments"]).decode()
                                               for c in m["tool_calls"]]) for m in messages]
    return hashlib.blake2b(orjson.dumps(norm), digest_size=16).digest()


def dedup_text(messages: list[dict]) -> str:
    """The text compared for near-duplicates: every turn but the system prompt (shared by most rows)."""
    return "\n".join(m["content"] + "".join(f" {c['function']['name']} {orjson.dumps(c['function']['arguments']).decode()}"
                                            for c in m.get("tool_calls") or ())
                     for m in messages if m["role"] != "system")


def _word_hashes(words: list[str]) -> np.ndarray:
    """Stable 64-bit word hashes (xxhash, a datasets dependency): Python's own hash() is salted
    per process, which would make borderline near-duplicate pairs differ from run to run."""
    return np.fromiter(map(xxhash.xxh64_intdigest, map(str.encode, words)), dtype=np.uint64, count=len(words))


@dataclass(frozen=True, slots=True)
class NearPair:
    row: int        # the later row
    other: int      # the earlier row it resembles
    similarity: float


class NearDuplicates:
    """Collects signatures batch by batch; `pairs()` returns each later row's best earlier match."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = NUM_PERM, bands: int = BANDS):
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.threshold = threshold
        self.num_perm = num_perm
        self.bands = bands
        self._rows: list[np.ndarray] = []
        self._sigs: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._mult = (np.arange(1, num_perm // bands + 1, dtype=np.uint64) * _M2) | np.uint64(1)

    def add(self, rows: list[int], texts: list[str]) -> None:
        if rows:
            self.add_signatures(rows, *self.signatures(texts))

    def add_signatures(self, rows, sig: np.ndarray, bands: np.ndarray) -> None:
        """Index rows whose signatures were computed (possibly in another process) by `signatures`."""
        if len(rows):
            self._sigs.append(sig)
            self._keys.append(bands)
            self._rows.append(np.asarray(rows, dtype=np.int64))

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(low 16 bits of the MinHash signature, band keys) for each text: the per-row work."""
        import rensa

        words: list[str] = []
        lens = np.empty(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            w = text.lower().translate(_PUNCT).split()
            if len(w) < SHINGLE:
                w += ["\x00"] * (SHINGLE - len(w))  # short texts still get one shingle
            words.extend(w)
            lens[i] = len(w)
        if not texts:
            return np.zeros((0, self.num_perm), np.uint16), np.zeros((0, self.bands), np.uint32)
        h = _word_hashes(words)
        tri = h[:-2] * _M1 + h[1:-1] * _M2 + h[2:]  # word trigrams (wrapping uint64 arithmetic)
        ends = np.cumsum(lens)
        keep = np.ones(len(tri), dtype=bool)
        cross = np.concatenate((ends - 2, ends - 1))  # trigrams that start in one text and end in the next
        keep[cross[cross < len(tri)]] = False
        flat = tri[keep]
        offsets = np.concatenate(([0], np.cumsum(lens - (SHINGLE - 1)))).astype(np.uint64)
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, self.num_perm, SEED)
        sig = np.asarray(matrix.to_rows(), dtype=np.uint32)
        r = self.num_perm // self.bands
        keys = (sig.reshape(len(texts), self.bands, r).astype(np.uint64) * self._mult).sum(axis=2, dtype=np.uint64)
        return sig.astype(np.uint16), (keys >> np.uint64(32)).astype(np.uint32) ^ keys.astype(np.uint32)

    def pairs(self, exclude_same: dict[int, int] | None = None) -> list[NearPair]:
        """Near-duplicate pairs at or above the threshold, one per later row (its most similar earlier row).

        `exclude_same` maps a row to the row it exactly duplicates; such pairs are not near-duplicates.
        """
        if not self._sigs:
            return []
        sigs = np.concatenate(self._sigs)
        rows = np.concatenate(self._rows)
        keys = np.concatenate(self._keys)
        n = len(rows)
        cand_a, cand_b = [], []
        for b in range(self.bands):
            k = keys[:, b]
            order = np.argsort(k, kind="stable")  # stable: within a bucket, earlier rows first
            ks = k[order]
            same = ks[1:] == ks[:-1]
            if not same.any():
                continue
            # the head of each run of equal keys pairs with every later member of the run
            starts = np.flatnonzero(np.concatenate(([True], ~same)))
            run_id = np.cumsum(np.concatenate(([True], ~same))) - 1
            heads = order[starts[run_id]]
            members = order
            mask = heads != members
            cand_a.append(heads[mask])
            cand_b.append(members[mask])
        if not cand_a:
            return []
        a = np.concatenate(cand_a)
        b = np.concatenate(cand_b)
        pair_ids = np.unique(a * n + b)
        a, b = pair_ids // n, pair_ids % n
        sim = np.empty(len(a), dtype=np.float32)
        for s in range(0, len(a), 65536):
            sl = slice(s, s + 65536)
            sim[sl] = (sigs[a[sl]] == sigs[b[sl]]).mean(axis=1)
        keep = sim >= self.threshold
        best: dict[int, NearPair] = {}
        for i, j, s in zip(rows[a[keep]].tolist(), rows[b[keep]].tolist(), sim[keep].tolist()):
            later, earlier = (i, j) if i > j else (j, i)
            if exclude_same and exclude_same.get(later) == earlier:
                continue
            old = best.get(later)
            if old is None or s > old.similarity or (s == old.similarity and earlier < old.other):
                best[later] = NearPair(later, earlier, round(s, 3))
        return sorted(best.values(), key=lambda p: p.row)
