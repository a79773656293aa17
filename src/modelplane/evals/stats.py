"""How sure a change in an eval run is: an exact McNemar test and paired-bootstrap intervals.

Both compare two runs of the same suite case by case (paired), which is far more sensitive
than comparing two pass rates as if the cases were independent samples: a case that passes
in both runs says nothing about the change, only the discordant cases do.

* `mcnemar_exact(b, c)`: b cases went pass → fail, c went fail → pass. Under "no change",
  each discordant case is a fair coin, so b ~ Binomial(b + c, 1/2). The two-sided p-value is
  the exact binomial one, ``min(1, 2·P(X ≤ min(b, c)))`` — the same as
  ``scipy.stats.binomtest(b, b + c, 0.5).pvalue`` — and 1 when there are no discordant
  cases. It is the conservative (not mid-p) test: it never claims more certainty than the
  data give; `mid_p=True` gives the mid-p variant (less conservative, closer to nominal size).
* `paired_bootstrap(diffs)`: the per-case differences (now - baseline) are resampled with
  replacement; the percentile interval of the resampled means at ``1 - alpha`` is the
  confidence interval of the mean difference. Seeded, so the same two runs always give the
  same interval. Resampling n cases with replacement is the same as drawing the counts of
  each distinct difference from a multinomial, which is how it is done when there are few
  distinct differences: pass/fail differences have at most three, so even 10,000 resamples
  of a huge suite cost almost nothing. Scores, with many distinct differences, resample
  case indices in blocks (10,000 resamples of 5,000 cases: under a second).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
SEED = 0
_BLOCK = 4_000_000  # numbers drawn per block of resamples: bounds the memory (~32 MB)
_FEW_VALUES = 32  # up to this many distinct differences, draw multinomial counts instead of indices


def mcnemar_exact(b: int, c: int, *, mid_p: bool = False) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (1.0 when b + c = 0)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be ≥ 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # Exact integer sums: int / int true division is correctly rounded even for huge n.
    tail = sum(math.comb(n, i) for i in range(k + 1))
    if mid_p:
        tail2 = 2 * tail - math.comb(n, k)  # 2·(P(X ≤ k) - P(X = k)/2), scaled by 2**n
        return min(1.0, tail2 / (1 << n))
    return min(1.0, 2 * tail / (1 << n))


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence interval for a mean difference; `level` is 1 - alpha (0.95)."""

    estimate: float
    low: float
    high: float
    level: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    diffs: Sequence[float] | np.ndarray,
    *,
    alpha: float = 0.05,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """Percentile bootstrap interval of the mean of paired differences (now - baseline)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("paired_bootstrap needs a non-empty 1-D sequence of differences")
    level = 1.0 - alpha
    values, counts = np.unique(d, return_counts=True)
    estimate = float(d.mean())
    if values.size == 1:  # every resample has the same mean
        return Interval(estimate, estimate, estimate, level)
    means = _resampled_means(d, values, counts, resamples, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(low), float(high), level)


def _resampled_means(d: np.ndarray, values: np.ndarray, counts: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` bootstrap samples of d (same size as d, drawn with replacement)."""
    rng = np.random.default_rng(seed)
    n = d.size
    few = values.size <= _FEW_VALUES
    block = max(1, _BLOCK // (values.size if few else n))
    parts = []
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        if few:  # how many times each distinct value is drawn
            parts.append(rng.multinomial(n, counts / n, size=size) @ values / n)
        else:
            parts.append(d[rng.integers(0, n, size=(size, n), dtype=np.int32)].mean(axis=1))
    return np.concatenate(parts)
