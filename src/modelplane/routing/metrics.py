"""How good a router is: RouteLLM's APGR and CPT, and what it saves at a quality target.

A router scores each prompt; routing the prompts whose score is at or above a threshold to
the strong model, and sweeping the threshold, traces the *performance curve*: mean
correctness as a function of the share of calls sent to the strong model. From it
(definitions of RouteLLM, Ong et al. 2024, arXiv 2406.18665, §3, and its `evaluate.py`):

- PGR(c) = (performance(c) - weak accuracy) / (strong accuracy - weak accuracy): the share of
  the gap between the two models that the router recovers with a share c of strong calls;
- APGR = ∫₀¹ PGR(c) dc, the area under that curve (a random router scores 0.5);
- CPT(x) = the smallest share of strong calls at which PGR reaches x.

Unlike RouteLLM's evaluation, which samples the curve at 10 quantile thresholds, the curve
here has one point per distinct score (every prompt, when scores are distinct), joined by
straight lines; prompts with equal scores move together, and the straight line between
two points is what random tie-breaking gives on average. So a constant-score router is
exactly the random router (APGR 0.5), and CPT is read off the first crossing of the curve
rather than interpolated as if the curve were monotonic.

The cost saving at a quality target q compares the router at the smallest share of strong
calls whose accuracy reaches q x the strong model's accuracy with sending every call to
the strong model, at the two models' prices per call (the same prompt costs about the
same number of tokens on either model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "PerformanceCurve",
    "RouterMetrics",
    "apgr",
    "cost_saving",
    "cpt",
    "evaluate",
    "oracle_scores",
    "performance_curve",
    "share_for_quality",
]

Floats = npt.NDArray[np.float64]
CPT_TARGETS = (0.5, 0.8, 0.95)
QUALITY_TARGET = 0.95


@dataclass(frozen=True, slots=True)
class PerformanceCurve:
    """Accuracy at each share of strong calls; `shares` rises from 0 to 1."""

    shares: Floats
    accuracy: Floats
    weak_accuracy: float
    strong_accuracy: float

    @property
    def pgr(self) -> Floats:
        """Performance gap recovered at each point."""
        gap = self.strong_accuracy - self.weak_accuracy
        out: Floats = (self.accuracy - self.weak_accuracy) / gap
        return out


def performance_curve(scores: npt.ArrayLike, weak_ok: npt.ArrayLike, strong_ok: npt.ArrayLike) -> PerformanceCurve:
    """The router's performance curve on prompts with known outcomes (higher score → strong first).

    Raises ValueError when the inputs are empty or of different lengths, or when the two
    models are equally accurate (there is no gap to recover).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    weak = np.asarray(weak_ok, dtype=bool).ravel()
    strong = np.asarray(strong_ok, dtype=bool).ravel()
    n = s.size
    if n == 0 or weak.size != n or strong.size != n:
        raise ValueError(f"need one score and two outcomes per prompt; got {n}, {weak.size}, {strong.size}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    weak_accuracy, strong_accuracy = float(weak.mean()), float(strong.mean())
    if weak_accuracy == strong_accuracy:
        raise ValueError(f"both models are {weak_accuracy:.1%} accurate: there is no performance gap to recover")
    order = np.argsort(-s, kind="stable")
    gain = strong[order].astype(np.int64) - weak[order].astype(np.int64)
    # One point at the end of each run of equal scores: a threshold cannot split a tie.
    sorted_scores = s[order]
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True)) + 1
    counts = np.concatenate(([0], ends))
    correct = weak.sum() + np.concatenate(([0], np.cumsum(gain)[ends - 1]))
    return PerformanceCurve(counts / n, correct / n, weak_accuracy, strong_accuracy)


def apgr(curve: PerformanceCurve) -> float:
    """Average performance gap recovered: the area under PGR over the share of strong calls."""
    pgr, x = curve.pgr, curve.shares
    return float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(x)) / 2)


def _first_crossing(x: Floats, y: Floats, target: float) -> float:
    """The smallest x at which the piecewise-linear y(x) reaches target (1.0 if it never does)."""
    reached = np.flatnonzero(y >= target - 1e-12)
    if reached.size == 0:
        return 1.0
    i = int(reached[0])
    if i == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))


def cpt(curve: PerformanceCurve, target: float) -> float:
    """Call-performance threshold: the smallest share of strong calls whose PGR reaches `target` (0-1)."""
    return _first_crossing(curve.shares, curve.pgr, target)


def share_for_quality(curve: PerformanceCurve, fraction_of_strong: float = QUALITY_TARGET) -> float:
    """The smallest share of strong calls whose accuracy reaches `fraction_of_strong` x the strong model's."""
    return _first_crossing(curve.shares, curve.accuracy, fraction_of_strong * curve.strong_accuracy)


def cost_saving(strong_share: float, weak_price: float, strong_price: float) -> float:
    """Fraction of the all-strong cost saved by sending `strong_share` of calls to strong, the rest to weak."""
    if strong_price <= 0:
        raise ValueError("the strong model's price must be positive")
    routed = strong_share * strong_price + (1 - strong_share) * weak_price
    return 1 - routed / strong_price


def oracle_scores(weak_ok: npt.ArrayLike, strong_ok: npt.ArrayLike) -> Floats:
    """The scores of a router that knows the outcomes: strong first where only it is right, last where only weak is."""
    weak = np.asarray(weak_ok, dtype=bool)
    strong = np.asarray(strong_ok, dtype=bool)
    out: Floats = 0.5 + 0.5 * (strong.astype(np.float64) - weak.astype(np.float64))
    return out


@dataclass(frozen=True, slots=True)
class RouterMetrics:
    """A router's figures on one data set; shares and savings are fractions (0-1)."""

    prompts: int
    weak_accuracy: float
    strong_accuracy: float
    apgr: float
    cpt50: float
    cpt80: float
    cpt95: float
    share_at_95_quality: float  # strong-call share whose accuracy reaches 95 % of the strong model's
    saving_at_95_quality: float | None  # vs all-strong at the given prices; None without prices

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def evaluate(
    scores: npt.ArrayLike,
    weak_ok: npt.ArrayLike,
    strong_ok: npt.ArrayLike,
    *,
    weak_price: float | None = None,
    strong_price: float | None = None,
) -> RouterMetrics:
    """APGR, CPT(50/80/95 %) and the saving at 95 % of the strong model's quality."""
    curve = performance_curve(scores, weak_ok, strong_ok)
    share = share_for_quality(curve)
    saving = None
    if weak_price is not None and strong_price is not None:
        saving = cost_saving(share, weak_price, strong_price)
    cpt50, cpt80, cpt95 = (cpt(curve, target) for target in CPT_TARGETS)
    return RouterMetrics(
        prompts=int(np.asarray(scores).size),
        weak_accuracy=curve.weak_accuracy,
        strong_accuracy=curve.strong_accuracy,
        apgr=apgr(curve),
        cpt50=cpt50,
        cpt80=cpt80,
        cpt95=cpt95,
        share_at_95_quality=share,
        saving_at_95_quality=saving,
    )
