"""Tiers: what a serving earns and costs besides its model calls; per-tier model lists on a route."""

from __future__ import annotations

import pytest

from modelplane.config.load import parse_config
from modelplane.config.schema import TierConfig
from modelplane.errors import ConfigError

CONFIG = """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  small: {provider: up, price: {input: 1, output: 1}}
  large: {provider: up, price: {input: 2, output: 2}}
  local: {provider: up, price: {input: 0, output: 0}}
tiers:
  free: {revenue_per_serving: 0}
  pro: {monthly_price: 20, expected_servings_per_month: 400, variable_cost_per_serving: 0.01}
features:
  reply:
    tiers: [free, pro]
    route: {models: [large], fallback: [local], tiers: {free: [small]}}
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return [str(issue) for issue in info.value.issues]


def test_revenue_per_serving_or_monthly_price_over_expected_servings() -> None:
    tiers = parse_config(CONFIG, env={}).tiers
    assert tiers["free"].revenue() == 0
    assert tiers["pro"].revenue() == pytest.approx(20 / 400)
    assert TierConfig().revenue() is None  # unknown, not 0: the report cannot show a margin


def test_margin_takes_off_model_cost_and_other_variable_cost() -> None:
    pro = TierConfig(monthly_price=20, expected_servings_per_month=400, variable_cost_per_serving=0.01)
    assert pro.margin(0.015) == pytest.approx(0.05 - 0.015 - 0.01)
    assert TierConfig(revenue_per_serving=0).margin(0.002) == pytest.approx(-0.002)
    assert TierConfig().margin(0.002) is None


def test_a_tier_gives_one_revenue_and_no_negative_cost() -> None:
    both = CONFIG.replace(
        "{revenue_per_serving: 0}", "{revenue_per_serving: 0, monthly_price: 5, expected_servings_per_month: 10}"
    )
    assert issues_of(both) == ["tiers.free: give `revenue_per_serving` or `monthly_price`, not both"]
    negative = CONFIG.replace("variable_cost_per_serving: 0.01", "variable_cost_per_serving: -1")
    assert issues_of(negative)[0].startswith("tiers.pro.variable_cost_per_serving: ")


def test_route_tiers_parse() -> None:
    route = parse_config(CONFIG, env={}).features["reply"].route
    assert route.tiers == {"free": ["small"]} and route.models == ["large"]


@pytest.mark.parametrize(
    ("route", "issue"),
    [
        (
            "{models: [large], fallback: [local], tiers: {gold: [small]}}",
            "features.reply.route.tiers.gold: unknown tier 'gold' (known: free, pro)",
        ),
        (
            "{models: [large], fallback: [local], tiers: {free: [small, tiny]}}",
            "features.reply.route.tiers.free[1]: unknown model 'tiny' (known: large, local, small)",
        ),
        (
            "{models: [large], fallback: [lcoal], tiers: {free: [small]}}",
            "features.reply.route.fallback[0]: unknown model 'lcoal' (known: large, local, small)",
        ),
    ],
)
def test_route_tier_errors_name_their_path(route: str, issue: str) -> None:
    text = CONFIG.replace("{models: [large], fallback: [local], tiers: {free: [small]}}", route)
    assert issues_of(text) == [issue]


def test_a_route_tier_must_be_open_to_the_feature_and_list_a_model() -> None:
    closed = CONFIG.replace("tiers: [free, pro]", "tiers: [pro]")
    assert issues_of(closed) == [
        "features.reply.route.tiers.free: tier 'free' may not use this feature (features.reply.tiers)"
    ]
    empty = CONFIG.replace("tiers: {free: [small]}", "tiers: {free: []}")
    assert issues_of(empty)[0].startswith("features.reply.route.tiers.free: ")
