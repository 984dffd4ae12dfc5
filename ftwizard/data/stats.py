"""Data set statistics: rows, formats, turns, roles and token lengths.

The estimate step reads `tokens_per_epoch` (tokens the trainer will process in one pass,
each row capped at the max length) for its time and cost figures.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

HIST_BINS = 12


def summarise(*, rows: int, valid: int, formats: dict[str, int], turns: Counter, roles: Counter,
              lengths, max_length: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rows": rows,
        "valid_rows": valid,
        "formats": formats,
        "roles": dict(roles.most_common()),
        "turns": _turns(turns),
        "tokens": None,
    }
    if lengths is not None and len(lengths):
        out["tokens"] = token_stats(np.frombuffer(lengths, dtype=np.uint32) if not isinstance(lengths, np.ndarray) else lengths,
                                    max_length)
    return out


def _turns(turns: Counter) -> dict[str, Any] | None:
    if not turns:
        return None
    n = sum(turns.values())
    return {
        "min": min(turns), "max": max(turns),
        "mean": round(sum(k * v for k, v in turns.items()) / n, 2),
        "histogram": {str(k): v for k, v in sorted(turns.items())},
    }


def token_stats(lengths: np.ndarray, max_length: int | None) -> dict[str, Any]:
    """Percentiles, a histogram, and what truncation at `max_length` would cost."""
    lengths = lengths.astype(np.int64)
    p = np.percentile(lengths, [50, 90, 95, 99])
    hi = int(lengths.max())
    lo = int(lengths.min())
    edges = np.linspace(lo, hi + 1, HIST_BINS + 1).astype(np.int64)
    if max_length and lo <= max_length < hi:  # a bin edge at the limit, so no bar mixes kept and truncated rows
        edges = np.append(edges, max_length + 1)
    edges = np.unique(edges)
    counts, edges = np.histogram(lengths, bins=edges)
    capped = np.minimum(lengths, max_length) if max_length else lengths
    over = int((lengths > max_length).sum()) if max_length else 0
    return {
        "count": int(len(lengths)),
        "total": int(lengths.sum()),
        "min": lo,
        "mean": round(float(lengths.mean()), 1),
        "p50": int(p[0]), "p90": int(p[1]), "p95": int(p[2]), "p99": int(p[3]),
        "max": hi,
        "max_length": max_length,
        "truncated_rows": over,
        "truncated_tokens": int((lengths - capped).sum()),
        "tokens_per_epoch": int(capped.sum()),
        "histogram": [{"from": int(a), "to": int(b) - 1, "rows": int(c)} for a, b, c in zip(edges[:-1], edges[1:], counts)],
    }
