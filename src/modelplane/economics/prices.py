"""What a call costs, from its usage and its model's price (USD per 1M tokens)."""

from __future__ import annotations

from modelplane.config.schema import Price
from modelplane.providers.base import Usage

_PER_TOKEN = 1e-6


def call_cost(usage: Usage, price: Price | None) -> float | None:
    """USD for one call, or None when the model has no price (never a made-up 0).

    Cached input tokens are part of the input tokens: they are charged once, at the
    cached price. Cache writes and reasoning tokens fall back to the input and output
    prices when the model has no separate price for them.
    """
    if price is None:
        return None
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    plain_input = usage.input_tokens - cached - written
    cached_price = price.input if price.cached_input is None else price.cached_input
    write_price = price.input if price.cache_write is None else price.cache_write
    # Providers count reasoning tokens inside output tokens; only a separate price changes the sum.
    reasoning = min(usage.reasoning_tokens, usage.output_tokens) if price.reasoning is not None else 0
    reasoning_price = price.reasoning if price.reasoning is not None else price.output
    return _PER_TOKEN * (
        plain_input * price.input
        + cached * cached_price
        + written * write_price
        + (usage.output_tokens - reasoning) * price.output
        + reasoning * reasoning_price
    )
