"""What a call costs: the price in effect when it was made (config first, then the shipped table)
applied to its usage (USD per 1M tokens)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from modelplane.config.schema import Config, Price
from modelplane.economics.table import PriceTable, default_table
from modelplane.ledger.records import CallRecord
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


@dataclass(frozen=True, slots=True)
class PriceHistory:
    """One model's prices over time: each applies from its start (unix seconds) until the next one's."""

    source: str  # "config", or "table:<entry>" for the shipped table
    starts: tuple[float, ...]  # ascending; -inf for a price without `effective`
    prices: tuple[Price, ...]

    @classmethod
    def of(cls, prices: Sequence[Price], source: str) -> PriceHistory:
        dated = sorted(((_start(p.effective), p) for p in prices), key=lambda pair: pair[0])
        return cls(source, tuple(s for s, _ in dated), tuple(p for _, p in dated))

    def at(self, ts: float) -> Price | None:
        """The price in effect at `ts`; None before the first one took effect."""
        if ts >= self.starts[-1]:  # the common case: a call made now, at the latest price
            return self.prices[-1]
        i = bisect.bisect_right(self.starts, ts) - 1
        return self.prices[i] if i >= 0 else None


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Every configured model's price history, resolved once per config."""

    histories: Mapping[str, PriceHistory]  # model name (the config's key) -> its prices
    table_as_of: date | None = None  # the shipped table's date, when any model is priced from it

    @classmethod
    def from_config(cls, config: Config, table: PriceTable | None = None) -> PriceBook:
        """A model's `price:` in config wins; else the table entry for its upstream `name`; else unpriced."""
        table = default_table() if table is None else table
        histories: dict[str, PriceHistory] = {}
        for name, model in config.models.items():
            if model.price is not None:
                histories[name] = PriceHistory.of(_as_list(model.price), "config")
            elif (entry := table.match(model.name or name)) is not None:
                histories[name] = PriceHistory.of(table.models[entry].prices, f"table:{entry}")
        from_table = any(h.source.startswith("table:") for h in histories.values())
        return cls(histories, table.as_of if from_table else None)

    def price_at(self, model: str, ts: float) -> Price | None:
        """The price of `model` in effect at unix time `ts`, or None when it has none."""
        history = self.histories.get(model)
        return None if history is None else history.at(ts)

    def unpriced(self, models: Sequence[str]) -> list[str]:
        """Those of `models` with no price at all."""
        return [m for m in models if m not in self.histories]


def reprice(call: Mapping[str, Any] | CallRecord, book: PriceBook, today: float | date) -> float | None:
    """A ledger call's cost at the price in effect `today` (unix seconds, or a date from 00:00 UTC),
    from the tokens it recorded; None when its model has no price now."""
    row = asdict(call) if isinstance(call, CallRecord) else call
    ts = today if isinstance(today, float | int) else _start(today)
    usage = Usage(
        input_tokens=int(row.get("input_tokens") or 0),
        cached_input_tokens=int(row.get("cached_input_tokens") or 0),
        cache_write_tokens=int(row.get("cache_write_tokens") or 0),
        output_tokens=int(row.get("output_tokens") or 0),
        reasoning_tokens=int(row.get("reasoning_tokens") or 0),
    )
    return call_cost(usage, book.price_at(str(row["model"]), ts))


def _as_list(price: Price | list[Price]) -> list[Price]:
    return [price] if isinstance(price, Price) else price


def _start(day: date | None) -> float:
    if day is None:
        return -math.inf
    if isinstance(day, datetime):
        return day.timestamp() if day.tzinfo else day.replace(tzinfo=UTC).timestamp()
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
