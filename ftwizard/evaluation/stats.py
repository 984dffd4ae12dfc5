"""Paired bootstrap intervals: is a difference between two models bigger than the noise?

Both models answered the same rows, so the rows are resampled together (a paired
bootstrap, as in Koehn 2004 for MT): each resample draws n row indices with
replacement, computes the metric for both models on those rows, and keeps the
difference. The 2.5th and 97.5th percentiles of the differences are the 95 % interval.
When it contains zero the data cannot tell the two apart, and the rows needed to
settle it follow from the interval's half-width shrinking like 1/sqrt(n).

A metric is resampled from its per-row values: a mean of row scores (accuracy,
ROUGE-L, probe passes...), a ratio of sums (eval loss: loss summed over tokens / tokens),
or macro-F1 recomputed from the resampled labels. numpy does the resampling; the seed
is fixed so the same results always give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

RESAMPLES = 2000
RESAMPLES_SLOW = 500  # metrics recomputed in Python per resample (macro-F1)
LEVEL = 0.95
SEED = 20240601
MAX_ROWS_HINT = 100_000


@dataclass
class Interval:
    diff: float          # a - b on all rows
    low: float           # 95 % interval of a - b
    high: float
    n: int

    @property
    def includes_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def rows_to_settle(self) -> int | None:
        """Rows at which an interval of this spread would just exclude zero (None: no difference to find)."""
        if self.diff == 0 or self.half_width <= 0:
            return None
        need = math.ceil(self.n * (self.half_width / abs(self.diff)) ** 2 * 1.1)  # 10 % margin
        need = max(need, self.n + 1)
        step = 10 if need < 1000 else 100
        return min(MAX_ROWS_HINT, int(math.ceil(need / step) * step))

    def to_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "n": self.n,
                "includes_zero": self.includes_zero, "rows_to_settle": self.rows_to_settle()}


def _indices(n: int, resamples: int):
    import numpy as np

    return np.random.default_rng(SEED).integers(0, n, size=(resamples, n))


def _percentiles(diffs) -> tuple[float, float]:
    import numpy as np

    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_mean(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Interval for mean(a) - mean(b) over paired rows."""
    import numpy as np

    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired rows differ: {len(a)} vs {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diffs = d[_indices(len(d), RESAMPLES)].mean(axis=1)
    lo, hi = _percentiles(diffs)
    return Interval(float(d.mean()), lo, hi, len(d))


def paired_ratio(a_num: Sequence[float], a_den: Sequence[float], b_num: Sequence[float],
                 b_den: Sequence[float], transform: Callable | None = None) -> Interval:
    """Interval for sum(a_num)/sum(a_den) - sum(b_num)/sum(b_den) (e.g. token-weighted loss)."""
    import numpy as np

    an, ad, bn, bd = (np.asarray(x, dtype=float) for x in (a_num, a_den, b_num, b_den))
    f = transform or (lambda x: x)
    idx = _indices(len(an), RESAMPLES)
    with np.errstate(divide="ignore", invalid="ignore"):
        diffs = f(an[idx].sum(1) / ad[idx].sum(1)) - f(bn[idx].sum(1) / bd[idx].sum(1))
    diffs = diffs[np.isfinite(diffs)]
    lo, hi = _percentiles(diffs) if len(diffs) else (float("nan"), float("nan"))
    return Interval(float(f(an.sum() / ad.sum()) - f(bn.sum() / bd.sum())), lo, hi, len(an))


def paired_statistic(stat: Callable[[list[int]], tuple[float, float]], n: int,
                     resamples: int = RESAMPLES_SLOW) -> Interval:
    """Interval for any statistic: `stat(indices)` returns (value_a, value_b) on those rows."""
    all_a, all_b = stat(list(range(n)))
    diffs = []
    for row in _indices(n, resamples):
        va, vb = stat(row.tolist())
        diffs.append(va - vb)
    lo, hi = _percentiles(diffs)
    return Interval(all_a - all_b, lo, hi, n)
