"""RouteLLM's metrics against hand-computed values and the random / oracle anchors."""

from __future__ import annotations

import numpy as np
import pytest

from modelplane.routing.metrics import (
    apgr,
    cost_saving,
    cpt,
    evaluate,
    oracle_scores,
    performance_curve,
    share_for_quality,
)

# Five prompts: A both right, B and C only strong right, D both wrong, E only weak right.
WEAK = [True, False, False, False, True]
STRONG = [True, True, True, False, False]


def test_oracle_by_hand() -> None:
    # weak 0.4, strong 0.6. The oracle sends the tie B, C first (PGR 2 at 40 %), then the tie A, D
    # (PGR stays 2 up to 80 %), E last (PGR 1 at 100 %): area 0.4 + 0.8 + 0.3 = 1.5.
    curve = performance_curve(oracle_scores(WEAK, STRONG), WEAK, STRONG)
    assert curve.shares.tolist() == pytest.approx([0, 0.4, 0.8, 1.0])
    assert curve.pgr.tolist() == pytest.approx([0, 2, 2, 1])
    assert apgr(curve) == pytest.approx(1.5)
    assert cpt(curve, 0.5) == pytest.approx(0.1)
    assert cpt(curve, 0.8) == pytest.approx(0.16)
    assert cpt(curve, 0.95) == pytest.approx(0.19)
    # 95 % of strong accuracy is 0.57, PGR 0.85, reached at 17 % strong calls.
    assert share_for_quality(curve, 0.95) == pytest.approx(0.17)


def test_constant_scores_are_the_random_router() -> None:
    metrics = evaluate(np.zeros(5), WEAK, STRONG)
    assert metrics.apgr == pytest.approx(0.5)
    assert metrics.cpt50 == pytest.approx(0.5)
    assert metrics.cpt80 == pytest.approx(0.8)
    assert metrics.cpt95 == pytest.approx(0.95)


def test_random_scores_average_one_half_and_the_oracle_is_far_above() -> None:
    rng = np.random.default_rng(0)
    weak = rng.random(2000) < 0.7
    strong = rng.random(2000) < 0.8
    randoms = [evaluate(rng.random(2000), weak, strong).apgr for _ in range(30)]
    assert np.mean(randoms) == pytest.approx(0.5, abs=0.02)
    assert evaluate(oracle_scores(weak, strong), weak, strong).apgr > 1.5
    worst = evaluate(-oracle_scores(weak, strong), weak, strong).apgr
    assert worst < 0


def test_strong_first_where_it_helps_beats_random() -> None:
    scores = [0.1, 0.9, 0.8, 0.5, 0.0]  # ranks B, C first and E last, A and D in between
    assert evaluate(scores, WEAK, STRONG).apgr > 1.0


def test_cost_saving_at_95_percent_quality() -> None:
    metrics = evaluate(oracle_scores(WEAK, STRONG), WEAK, STRONG, weak_price=1.0, strong_price=10.0)
    # 17 % strong calls: 0.17 · 10 + 0.83 · 1 = 2.53 per call instead of 10.
    assert metrics.saving_at_95_quality == pytest.approx(1 - 2.53 / 10)
    assert evaluate(oracle_scores(WEAK, STRONG), WEAK, STRONG).saving_at_95_quality is None
    assert cost_saving(1.0, 1.0, 10.0) == pytest.approx(0.0)
    assert cost_saving(0.0, 0.0, 10.0) == pytest.approx(1.0)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no performance gap"):
        evaluate([0.1, 0.2], [True, False], [False, True])
    with pytest.raises(ValueError, match="one score"):
        evaluate([0.1], [True, False], [False, True])
    with pytest.raises(ValueError, match="NaN"):
        evaluate([float("nan"), 0.1], [True, False], [True, True])
