"""The projection on synthetic traffic whose answer is known in closed form, and the what-if grammar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelplane.economics.projection import (
    POINTS,
    CacheCurve,
    CacheHitRate,
    CacheThreshold,
    FeatureBasis,
    Reprice,
    Reroute,
    fit_cache_curve,
    parse_what_if,
    project,
)
from modelplane.economics.report import build_report
from modelplane.errors import UsageError
from modelplane.ledger import LedgerStore
from modelplane.ledger.queries import ReportFilter
from reportledger import config, steady_traffic

COST = 0.012  # each synthetic serving: one `large` call, 1000 in / 100 out at $10 / $20 per 1M
REVENUE = 20 / 400  # the pro tier


async def projection_of(tmp_path: Path, what_ifs: list[str]) -> list[tuple[int, float, float | None]]:
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/ledger.db")
    await store.open()
    try:
        if await store.count() == 0:
            await store.write(steady_traffic())
        report = await build_report(store, config(), ReportFilter(), what_ifs=what_ifs)
    finally:
        await store.close()
    assert report.projection is not None
    return [(p.servings_per_month, p.cost_usd, p.margin_usd) for p in report.projection.points]


def test_points_run_from_1k_to_10m_on_a_log_scale() -> None:
    assert POINTS[0] == 1_000 and POINTS[-1] == 10_000_000
    assert POINTS[:4] == (1_000, 2_000, 5_000, 10_000)


async def test_constant_cost_and_no_cache_give_c_times_n(tmp_path: Path) -> None:
    for n, cost, margin in await projection_of(tmp_path, []):
        assert cost == pytest.approx(COST * n, rel=1e-9)
        assert margin == pytest.approx((REVENUE - COST) * n, rel=1e-9)


async def test_rerouting_30_percent_to_a_model_at_half_the_cost(tmp_path: Path) -> None:
    for n, cost, _ in await projection_of(tmp_path, ["route 30% of support-reply to half"]):
        assert cost == pytest.approx((1 - 0.15) * COST * n, rel=1e-9)


async def test_a_price_change_reprices_the_model_s_tokens(tmp_path: Path) -> None:
    # `gpt-4o` is the upstream name of the `large` model.
    for n, cost, _ in await projection_of(tmp_path, ["price gpt-4o input=5 output=10"]):
        assert cost == pytest.approx(COST / 2 * n, rel=1e-9)
    # A reroute after a price change uses the new prices: everything at half, whichever model answers.
    both = await projection_of(tmp_path, ["route 50% of support-reply to small", "price small input=5 output=10"])
    assert both[-1][1] == pytest.approx(0.5 * COST * 1e7 + 0.5 * COST / 2 * 1e7, rel=1e-9)


async def test_a_cache_hit_rate_what_if(tmp_path: Path) -> None:
    for n, cost, _ in await projection_of(tmp_path, ["cache hit-rate 40%"]):
        assert cost == pytest.approx(0.6 * COST * n, rel=1e-9)


async def test_unknown_names_in_what_ifs_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown model 'gpt-9'"):
        await projection_of(tmp_path, ["route 30% of support-reply to gpt-9"])
    with pytest.raises(UsageError, match="feature 'nope'"):
        await projection_of(tmp_path, ["route 30% of nope to small"])
    with pytest.raises(UsageError, match="has no price"):
        await projection_of(tmp_path, ["route 30% of support-reply to mystery"])


def test_what_if_grammar() -> None:
    assert parse_what_if("route 30% of support-reply to small") == Reroute(0.3, "support-reply", "small")
    assert parse_what_if("  Route 2.5 %  of a to b ") == Reroute(0.025, "a", "b")
    assert parse_what_if("price gpt-4o input=2.0 output=8.0") == Reprice("gpt-4o", {"input": 2.0, "output": 8.0})
    assert parse_what_if("cache threshold 0.9") == CacheThreshold(0.9, None)
    assert parse_what_if("cache threshold 0.85 for support-reply") == CacheThreshold(0.85, "support-reply")
    assert parse_what_if("cache hit-rate 40% for x") == CacheHitRate(0.4, "x")
    for bad in ("route 130% of a to b", "price m input=1 speed=2", "cache threshold 1.5", "make it cheaper", ""):
        with pytest.raises(UsageError) as caught:
            parse_what_if(bad)
        assert caught.value.hint


def test_a_lower_semantic_threshold_scales_semantic_hits() -> None:
    basis = FeatureBasis(
        feature="f",
        servings=100,
        cost_per_miss=0.01,
        cost_per_hit=0.0,
        misses=80,
        hit_rate=0.2,
        semantic_share=1.0,
        revenue=None,
        variable_cost=0.0,
        cache=CacheCurve("constant", 0.2, 0.0, 1),
        threshold=0.95,
    )
    result = project([basis], config(), ["cache threshold 0.9"])
    # Similarities assumed even over [0.95, 1]: lowering to 0.9 doubles the semantic hits.
    assert result.points[0].cache_hit_rate == pytest.approx(0.4)
    assert result.points[0].cost_usd == pytest.approx(0.6 * 0.01 * 1000)
    assert result.baseline is not None and result.baseline[0].cost_usd == pytest.approx(0.8 * 0.01 * 1000)
    assert result.points[0].margin_usd is None  # no revenue known


def test_the_cache_curve_is_fitted_from_daily_history() -> None:
    h_max, k = 0.5, 3000.0
    per_day = np.array([10, 30, 100, 300, 1000, 3000])
    hits = per_day * h_max * (per_day * 30) / (per_day * 30 + k)
    curve = fit_cache_curve(per_day, hits)
    assert curve.kind == "saturating" and curve.days == 6
    assert curve.h_max == pytest.approx(h_max, rel=0.05)
    assert curve.k == pytest.approx(k, rel=0.15)
    for n in (1_000, 100_000, 10_000_000):
        assert curve.rate(n) == pytest.approx(h_max * n / (n + k), rel=0.05)


def test_too_little_history_keeps_the_observed_rate() -> None:
    curve = fit_cache_curve(np.array([100, 120]), np.array([20, 24]))
    assert (curve.kind, curve.h_max, curve.rate(10_000_000)) == ("constant", 0.2, 0.2)
    flat = fit_cache_curve(np.array([100, 110, 120]), np.array([10, 11, 12]))
    assert flat.kind == "constant"
