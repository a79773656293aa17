"""McNemar and the paired bootstrap against values known independently of the implementation."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from modelplane.evals.stats import mcnemar_exact, paired_bootstrap

# (b, c, exact two-sided p), the p-values computed by hand: 2 · Σ_{i ≤ min} C(n, i) / 2^n, capped at 1.
KNOWN = [
    (0, 0, 1.0),
    (1, 0, 1.0),
    (5, 0, 0.0625),  # 2 / 32
    (6, 0, 0.03125),  # 2 / 64
    (0, 12, 2 / 4096),
    (3, 7, 0.34375),  # 2 · (1 + 10 + 45 + 120) / 1024
    (10, 10, 1.0),
    (8, 2, 0.109375),  # 2 · (1 + 10 + 45) / 1024
]


@pytest.mark.parametrize(("b", "c", "expected"), KNOWN)
def test_mcnemar_exact_matches_hand_computed_binomial_sums(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(c, b) == pytest.approx(expected, rel=1e-12)  # symmetric


@pytest.mark.parametrize(("b", "c"), [(1, 0), (4, 9), (17, 3), (50, 30), (400, 350), (0, 40)])
def test_mcnemar_exact_agrees_with_scipy_binomtest(b: int, c: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_mcnemar_exact_is_exact_for_large_counts() -> None:
    # 3,000 discordant pairs: float binomial pmfs would underflow; integer sums do not.
    b, c = 1400, 1600
    exact = 2 * Fraction(sum(math.comb(3000, i) for i in range(1401)), 2**3000)
    assert mcnemar_exact(b, c) == pytest.approx(float(exact), rel=1e-12)
    assert 0 < mcnemar_exact(b, c) < 0.001


def test_mcnemar_mid_p_is_smaller_by_the_point_probability() -> None:
    # mid-p = exact - P(X = min(b, c)) · 2 / … : for (3, 7): 2 · (1 + 10 + 45 + 120/2) / 1024
    assert mcnemar_exact(3, 7, mid_p=True) == pytest.approx(2 * (1 + 10 + 45 + 60) / 1024)
    assert mcnemar_exact(0, 0, mid_p=True) == 1.0


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="≥ 0"):
        mcnemar_exact(-1, 3)


def test_bootstrap_of_equal_differences_is_degenerate() -> None:
    interval = paired_bootstrap([0.25] * 40)
    assert (interval.estimate, interval.low, interval.high) == pytest.approx((0.25, 0.25, 0.25))
    assert interval.excludes_zero


def test_bootstrap_of_a_large_sample_is_close_to_the_normal_interval() -> None:
    d = np.random.default_rng(7).normal(0.1, 1.0, 4000)
    half = 1.959964 * d.std(ddof=1) / math.sqrt(d.size)
    interval = paired_bootstrap(d)
    assert interval.estimate == pytest.approx(d.mean())
    assert interval.low == pytest.approx(d.mean() - half, abs=0.004)
    assert interval.high == pytest.approx(d.mean() + half, abs=0.004)
    assert interval.level == pytest.approx(0.95)


def test_bootstrap_of_pass_fail_differences_is_close_to_the_normal_interval() -> None:
    # 1,000 paired cases: 60 regressions (-1), 20 fixes (+1): mean -0.04, sd ≈ 0.28.
    d = np.array([-1.0] * 60 + [1.0] * 20 + [0.0] * 920)
    half = 1.959964 * d.std(ddof=1) / math.sqrt(d.size)
    interval = paired_bootstrap(d)
    assert interval.estimate == pytest.approx(-0.04)
    assert interval.low == pytest.approx(-0.04 - half, abs=0.003)
    assert interval.high == pytest.approx(-0.04 + half, abs=0.003)
    assert interval.excludes_zero


def test_bootstrap_is_seeded_and_narrows_with_alpha() -> None:
    d = np.random.default_rng(3).normal(0.0, 1.0, 300)
    assert paired_bootstrap(d) == paired_bootstrap(d)
    wide, narrow = paired_bootstrap(d, alpha=0.01), paired_bootstrap(d, alpha=0.2)
    assert wide.low < narrow.low < narrow.high < wide.high
    assert not paired_bootstrap(d).excludes_zero


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]]])
def test_bootstrap_rejects_empty_or_2d_input(bad: list[object]) -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        paired_bootstrap(bad)  # type: ignore[arg-type]


def test_bootstrap_rejects_alpha_out_of_range() -> None:
    with pytest.raises(ValueError, match="alpha"):
        paired_bootstrap([1.0, 2.0], alpha=1.5)
