"""What a call costs: cached input charged once at its price, unpriced is None, never 0."""

from __future__ import annotations

import pytest

from modelplane.config.schema import Price
from modelplane.economics.prices import call_cost
from modelplane.providers.base import Usage

PRICE = Price(input=2.50, cached_input=1.25, output=10.00)


def test_plain_call() -> None:
    assert call_cost(Usage(input_tokens=1000, output_tokens=500), PRICE) == pytest.approx((1000 * 2.5 + 500 * 10) / 1e6)


def test_cached_input_is_part_of_input_and_charged_once() -> None:
    cost = call_cost(Usage(input_tokens=1000, cached_input_tokens=800, output_tokens=0), PRICE)
    assert cost == pytest.approx((200 * 2.5 + 800 * 1.25) / 1e6)


def test_cached_price_defaults_to_input_price() -> None:
    price = Price(input=1.0, output=2.0)
    assert call_cost(Usage(input_tokens=100, cached_input_tokens=100), price) == pytest.approx(100 / 1e6)


def test_cache_writes_and_reasoning_use_their_own_prices() -> None:
    price = Price(input=3.0, cached_input=0.3, cache_write=3.75, output=15.0, reasoning=20.0)
    usage = Usage(
        input_tokens=1000, cached_input_tokens=600, cache_write_tokens=300, output_tokens=100, reasoning_tokens=40
    )
    expected = (100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 60 * 15.0 + 40 * 20.0) / 1e6
    assert call_cost(usage, price) == pytest.approx(expected)


def test_unpriced_is_none_not_zero() -> None:
    assert call_cost(Usage(input_tokens=10, output_tokens=10), None) is None
    assert call_cost(Usage(), PRICE) == 0.0
