"""The report's numbers match a hand calculation on a small ledger, on SQLite and on Postgres."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import orjson
import pytest

from modelplane.config.load import parse_config
from modelplane.economics.prices import PriceBook, reprice
from modelplane.economics.report import Economics, Report, build_report, report_json, report_schema
from modelplane.ledger import LedgerStore
from modelplane.ledger.queries import ReportFilter
from reportledger import CONFIG_YAML, DAY, T0, config, hand_ledger, request


@pytest.fixture(params=["sqlite", "sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    if request.param == "sqlite-memory":
        return "sqlite:///:memory:"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[LedgerStore]:
    ledger = LedgerStore.from_url(ledger_url)
    await ledger.open()
    await ledger.write(hand_ledger())
    yield ledger
    await ledger.close()


def feature(report: Report, name: str) -> Economics:
    [row] = [row for row in report.features if row.feature == name]
    return row


def tier(row: Economics, name: str) -> Economics:
    [found] = [t for t in row.tiers if t.tier == name]
    return found


async def test_support_reply_pro_matches_the_hand_calculation(store: LedgerStore) -> None:
    report = await build_report(store, config(), ReportFilter())
    pro = tier(feature(report, "support-reply"), "pro")
    # s1 $0.002 · s2 (two requests) $0.002 + $0.001 · s3 cache hit $0 · s4 escalated $0.004
    assert pro.servings == 4
    assert pro.cost_per_serving_usd.mean == pytest.approx(0.00225)
    assert pro.cost_per_serving_usd.p50 == pytest.approx(0.0025)  # between 0.002 and 0.003
    assert pro.cost_per_serving_usd.p95 == pytest.approx(0.003 + 0.85 * 0.001)  # rank 2.85 of 0..3
    assert pro.tokens_per_serving.input.mean == pytest.approx((1000 + 1100 + 0 + 2000) / 4)
    assert pro.tokens_per_serving.output.p50 == pytest.approx((50 + 500) / 2)
    assert pro.revenue_per_serving_usd == pytest.approx(20 / 400)
    assert pro.margin_per_serving_usd == pytest.approx(0.05 - 0.00225)
    assert pro.margin_pct == pytest.approx(100 * (0.05 - 0.00225) / 0.05)
    assert (pro.cache_hit_rate, pro.fallback_rate, pro.escalation_rate) == (0.25, 0.25, 0.25)
    assert pro.model_mix == {"small": 0.75, "large": 0.25}
    # s2 spans from its first arrival (T0+10) to its last answer (T0+11 + 300 ms): 1300 ms
    assert pro.latency_ms.p50 == pytest.approx((100 + 400) / 2)
    assert pro.latency_ms.p95 == pytest.approx(400 + 0.85 * (1300 - 400), rel=1e-6)
    # The ledger records savings (m003); there are no cache hits here.
    assert (pro.calls, pro.unpriced_calls, pro.unpriced_servings, pro.saved_usd) == (4, 0, 0, 0.0)


async def test_unpriced_calls_are_flagged_and_left_out_of_cost(store: LedgerStore) -> None:
    report = await build_report(store, config(), ReportFilter())
    free = tier(feature(report, "support-reply"), "free")
    assert (free.servings, free.priced_servings, free.unpriced_servings, free.unpriced_calls) == (2, 1, 1, 1)
    assert free.cost_per_serving_usd.mean == pytest.approx(0.001)
    assert free.margin_per_serving_usd == pytest.approx(-0.001)
    assert free.margin_pct is None  # no revenue to divide by
    assert report.total.unpriced_calls == 1


async def test_a_serving_whose_client_got_an_error_counts_in_the_error_rate(store: LedgerStore) -> None:
    assert tier(feature(await build_report(store, config(), ReportFilter()), "support-reply"), "pro").error_rate == 0
    failed = request("r8", "s8", feature="support-reply", tier="pro", ts=T0 + 35, latency=30_000, calls=[])
    failed.status, failed.http_status, failed.error_class = "error", 502, "server_error"
    await store.write([failed])
    pro = tier(feature(await build_report(store, config(), ReportFilter()), "support-reply"), "pro")
    assert (pro.servings, pro.error_rate, pro.escalation_rate) == (5, 0.2, 0.2)


async def test_feature_tier_and_total_rows_weight_by_servings(store: LedgerStore) -> None:
    report = await build_report(store, config(), ReportFilter())
    support = feature(report, "support-reply")
    assert support.servings == 6
    assert support.cost_per_serving_usd.mean == pytest.approx((0.002 + 0.003 + 0 + 0.004 + 0.001) / 5)
    assert support.revenue_per_serving_usd == pytest.approx(4 * 0.05 / 6)
    assert support.margin_per_serving_usd == pytest.approx(4 * 0.05 / 6 - 0.002)
    summarize = feature(report, "summarize")
    assert (summarize.servings, summarize.margin_per_serving_usd) == (1, pytest.approx(-0.03))
    assert [t.tier for t in report.tiers] == ["free", "pro"]
    assert [t.servings for t in report.tiers] == [3, 4]
    assert report.total.servings == 7 and report.total.calls == 7
    assert report.total.model_mix == pytest.approx({"small": 4 / 7, "large": 2 / 7, "mystery": 1 / 7})


async def test_filters(store: LedgerStore) -> None:
    only = await build_report(store, config(), ReportFilter(features=("summarize",)))
    assert [row.feature for row in only.features] == ["summarize"] and only.total.servings == 1
    pro = await build_report(store, config(), ReportFilter(tiers=("pro",)))
    assert [t.tier for t in pro.tiers] == ["pro"] and pro.total.servings == 4
    later = await build_report(store, config(), ReportFilter(since=T0 + DAY))
    assert later.total.servings == 1 and later.since == "2026-01-02T00:00:00+00:00"
    early = await build_report(store, config(), ReportFilter(until=T0 + 11))  # r2b falls outside
    assert early.total.servings == 2
    assert early.total.cost_per_serving_usd.mean == pytest.approx((0.002 + 0.002) / 2)
    empty = await build_report(store, config(), ReportFilter(since=T0 + 9 * DAY))
    assert empty.total.servings == 0 and empty.features == [] and empty.projection is None


async def test_json_output_validates_against_the_schema(store: LedgerStore) -> None:
    report = await build_report(store, config(), ReportFilter(), what_ifs=["route 30% of support-reply to half"])
    data = orjson.loads(report_json(report))
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    assert [row["feature"] for row in data["features"]] == ["summarize", "support-reply"]
    assert [row["tier"] for row in data["features"][1]["tiers"]] == ["free", "pro"]
    assert data["projection"]["baseline"] is not None
    broken = data | {"total": data["total"] | {"servings": "seven"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(report_schema()).validate(broken)


async def test_reprice_recomputes_every_call_at_todays_prices(store: LedgerStore) -> None:
    old = "small: {provider: up, name: gpt-4o-mini, price: {input: 1.0, cached_input: 0.5, output: 2.0}}"
    new = "small: {provider: up, name: gpt-4o-mini, price: {input: 3.0, cached_input: 1.5, output: 7.0}}"
    repriced_config = parse_config(CONFIG_YAML.replace(old, new), env={})
    as_recorded = tier(feature(await build_report(store, repriced_config, ReportFilter()), "support-reply"), "pro")
    repriced = tier(
        feature(await build_report(store, repriced_config, ReportFilter(), reprice=True), "support-reply"), "pro"
    )
    # The same figure worked out call by call in Python with economics.prices.reprice.
    book, now = PriceBook.from_config(repriced_config), time.time()
    per_serving: dict[str, float] = {}
    for row in await store.servings(limit=1000):
        if (row["feature"], row["tier"]) != ("support-reply", "pro"):
            continue
        costs = [reprice(call, book, now) for call in await store.calls_for(str(row["id"]))]
        assert None not in costs
        per_serving[str(row["serving_id"])] = per_serving.get(str(row["serving_id"]), 0.0) + sum(
            c for c in costs if c is not None
        )
    expected = sum(per_serving.values()) / len(per_serving)
    assert repriced.cost_per_serving_usd.mean == pytest.approx(expected)
    assert as_recorded.cost_per_serving_usd.mean == pytest.approx(0.00225)  # what the ledger recorded
    assert repriced.cost_per_serving_usd.mean != pytest.approx(0.00225)
