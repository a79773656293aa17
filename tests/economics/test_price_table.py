"""The shipped price table, the price in effect at a time, config overrides, and repricing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from importlib import resources

import pytest

from modelplane.config.load import parse_config
from modelplane.config.schema import Price
from modelplane.economics.prices import PriceBook, call_cost, reprice
from modelplane.economics.table import PriceTable, default_table
from modelplane.errors import ConfigError
from modelplane.ledger.records import CallRecord
from modelplane.providers.base import Usage

EXPECTED = {
    "openai": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini"],
    "anthropic": ["claude-3-5-haiku", "claude-sonnet-4", "claude-sonnet-4-5", "claude-opus-4"],
    "google": ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro"],
    "mistral": ["mistral-large", "mistral-small", "codestral"],
}


PROVIDERS = "providers: {up: {kind: openai, base_url: 'http://127.0.0.1:9/v1'}}\n"


def ts(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


def book_for(models_yaml: str) -> PriceBook:
    text = f"{PROVIDERS}models:\n{models_yaml}"
    return PriceBook.from_config(parse_config(text, env={}))


def test_the_shipped_table_is_in_the_package_and_valid() -> None:
    assert resources.files("modelplane.economics").joinpath("prices.yaml").is_file()
    table = default_table()
    text = resources.files("modelplane.economics").joinpath("prices.yaml").read_text()
    assert "list prices" in text.lower() and "not fetched at run time" in text
    for vendor, names in EXPECTED.items():
        for name in names:
            assert table.models[name].vendor == vendor, name
    for name, entry in table.models.items():
        days = [p.effective for p in entry.prices]
        assert all(d is not None and d <= table.as_of for d in days), name
        for price in entry.prices:
            assert price.cached_input is None or price.cached_input <= price.input, name
            if entry.vendor == "anthropic":
                assert price.cache_write is not None and price.cache_write > price.input, name


def test_a_table_entry_must_be_dated_and_in_order() -> None:
    with pytest.raises(ValueError, match="needs `effective`"):
        PriceTable.model_validate(
            {"as_of": "2025-01-01", "models": {"m": {"vendor": "x", "prices": [{"input": 1, "output": 1}]}}}
        )
    late_first = [
        {"effective": "2025-02-01", "input": 1, "output": 1},
        {"effective": "2025-01-01", "input": 2, "output": 2},
    ]
    with pytest.raises(ValueError, match="oldest first"):
        PriceTable.model_validate({"as_of": "2025-03-01", "models": {"m": {"vendor": "x", "prices": late_first}}})


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),  # never the shorter `gpt-4o`
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", None),  # a Bedrock id keeps its vendor prefix
        ("mistral-large-2411", "mistral-large"),
        ("codestral-latest", "codestral"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-flash-preview-04-17", "gemini-2.5-flash"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("openai/GPT-4.1-mini", "gpt-4.1-mini"),
        ("claude-opus-4-7", None),  # `-7` is a version, not a snapshot: unknown, so unpriced
        ("gpt-4o-audio-preview", None),
        ("llama-3.1-8b", None),
    ],
)
def test_lookup_is_exact_then_without_snapshot_suffixes(name: str, entry: str | None) -> None:
    assert default_table().match(name) == entry


def test_history_prices_a_call_at_the_price_in_effect_then() -> None:
    book = book_for("  large: {provider: up, name: gpt-4o-2024-08-06}\n  o3: {provider: up}\n")
    assert book.histories["large"].source == "table:gpt-4o"
    assert book.price_at("large", ts("2024-01-01")) is None  # before the model existed
    launch = book.price_at("large", ts("2024-06-01"))
    assert launch is not None and (launch.input, launch.output) == (5.0, 15.0)
    # The new price applies from 00:00 UTC on its effective date.
    assert book.price_at("large", ts("2024-10-01T23:59:59")) == launch
    today = book.price_at("large", ts("2024-10-02"))
    assert today is not None and (today.input, today.cached_input, today.output) == (2.5, 1.25, 10.0)
    cut = book.price_at("o3", ts("2025-07-01"))
    assert cut is not None and cut.output == 8.0
    assert book.table_as_of == default_table().as_of


def test_reasoning_tokens_priced_apart_where_the_vendor_did() -> None:
    book = book_for("  flash: {provider: up, name: gemini-2.5-flash}\n")
    usage = Usage(input_tokens=1000, output_tokens=500, reasoning_tokens=400)
    preview = call_cost(usage, book.price_at("flash", ts("2025-05-01")))
    assert preview == pytest.approx((1000 * 0.15 + 100 * 0.60 + 400 * 3.50) / 1e6)
    stable = call_cost(usage, book.price_at("flash", ts("2025-07-01")))
    assert stable == pytest.approx((1000 * 0.30 + 500 * 2.50) / 1e6)


def test_config_price_wins_over_the_table_and_may_be_a_history() -> None:
    book = book_for(
        "  one: {provider: up, name: gpt-4o, price: {input: 1, output: 2}}\n"
        "  hist:\n"
        "    provider: up\n"
        "    name: gpt-4o\n"
        "    price:\n"
        "      - {effective: 2025-03-01, input: 3, output: 4}\n"
        "      - {input: 1, output: 2}\n"
    )
    assert book.histories["one"].source == "config"
    assert book.price_at("one", ts("2000-01-01")) == Price(input=1, output=2)  # undated: always in effect
    assert book.price_at("hist", ts("2025-02-28T23:00")) == Price(input=1, output=2)
    assert book.price_at("hist", ts("2025-03-01")) == Price(input=3, output=4, effective=date(2025, 3, 1))
    assert book.table_as_of is None  # nothing here is priced from the table


def test_a_model_in_neither_config_nor_table_stays_unpriced() -> None:
    book = book_for("  mine: {provider: up, name: my-finetune}\n  gpt-4o: {provider: up}\n")
    assert book.price_at("mine", ts("2025-01-01")) is None
    assert book.unpriced(["mine", "gpt-4o"]) == ["mine"]  # without `name`, the model's key is looked up
    assert call_cost(Usage(input_tokens=10), book.price_at("mine", ts("2025-01-01"))) is None


def test_price_history_errors_name_their_path() -> None:
    base = PROVIDERS + "models: {m: {provider: up, price: PRICE}}\n"

    def issues(price: str) -> list[str]:
        with pytest.raises(ConfigError) as info:
            parse_config(base.replace("PRICE", price), env={})
        return [str(issue) for issue in info.value.issues]

    assert issues("{input: 1, output: -1}")[0].startswith("models.m.price.output: ")
    assert issues("[{input: 1, output: 1}, {effective: 2025-13-01, input: 1, output: 1}]")[0].startswith(
        "models.m.price[1].effective: "
    )
    assert issues("[{input: 1, output: 1}, {input: 2, output: 2}]") == [
        "models.m.price: only one price of a history may leave out `effective` (it applies before the others)"
    ]
    two = "[{effective: 2025-01-01, input: 1, output: 1}, {effective: 2025-01-01, input: 2, output: 2}]"
    assert issues(two) == ["models.m.price: two prices have the same `effective` date"]
    assert issues("[]")[0].startswith("models.m.price: ")


def test_reprice_recomputes_a_ledger_call_at_todays_price() -> None:
    book = book_for("  large: {provider: up, name: gpt-4o}\n")
    row = {
        "model": "large",
        "ts": ts("2024-06-01"),
        "input_tokens": 1000,
        "cached_input_tokens": 400,
        "cache_write_tokens": 0,
        "output_tokens": 100,
        "reasoning_tokens": 0,
        "cost_usd": 0.0065,
    }
    today = (600 * 2.5 + 400 * 1.25 + 100 * 10.0) / 1e6
    assert reprice(row, book, ts("2025-01-01")) == pytest.approx(today)
    assert reprice(row, book, date(2025, 1, 1)) == pytest.approx(today)
    assert reprice(row, book, date(2024, 6, 1)) == pytest.approx((1000 * 5.0 + 100 * 15.0) / 1e6)
    record = CallRecord(
        "c",
        "r",
        "s",
        ts("2024-06-01"),
        0,
        "large",
        "up",
        "ok",
        input_tokens=1000,
        cached_input_tokens=400,
        output_tokens=100,
    )
    assert reprice(record, book, ts("2025-01-01")) == pytest.approx(today)
    assert reprice({**row, "model": "renamed-since"}, book, ts("2025-01-01")) is None
