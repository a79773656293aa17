"""The report's routing section from a hand-made ledger, on SQLite and Postgres: the share routed to
each model, measured regret and cost saved, in JSON (valid against the schema) and in the table."""

from __future__ import annotations

import io

import jsonschema
import orjson
import pytest
import sqlalchemy as sa
from rich.console import Console

from modelplane.cli.report import render_table
from modelplane.config.load import parse_config
from modelplane.economics.report import build_report, report_json, report_schema
from modelplane.ledger.queries import ReportFilter
from modelplane.ledger.records import ServingRecord
from modelplane.ledger.store import LedgerStore
from modelplane.routing.shadow import SHADOWS

T0 = 1_750_000_000.0
CONFIG = parse_config(
    """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}}
models: {small: {provider: up}, large: {provider: up}}
features:
  ask: {route: {strategy: learned, router: r.json, weak: small, strong: large}}
  plain: {route: {models: [small]}}
""",
    env={},
)


def serving(i: int, feature: str, model: str, strategy: str, cost: float, operation: str = "chat") -> ServingRecord:
    return ServingRecord(
        id=f"r{i:03d}",
        serving_id=f"s{i:03d}",
        ts=T0 + i,
        tenant="acme",
        tier="default",
        feature=feature,
        operation=operation,
        status="ok",
        http_status=200,
        model=model,
        cost_usd=cost,
        route_strategy=strategy,
        route_model=model,
    )


def shadow(i: int, verdict: str, weak_cost: float, strong_cost: float | None) -> dict[str, object]:
    worse = verdict == "weak_worse"
    return {
        "serving_id": f"s{i:03d}",
        "feature": "ask",
        "ts": T0 + i,
        "weak_model": "small",
        "strong_model": "large",
        "weak_cost": weak_cost,
        "strong_cost": strong_cost,
        "verdict": verdict,
        "score": 0.0 if worse else 1.0,
        "weak_ok": not worse,
        "strong_ok": True,
        "prompt": f"question {i}",
        "config_version": "v",
    }


@pytest.fixture
async def routed(store: LedgerStore) -> LedgerStore:
    """The shared empty store (tests/conftest.py, once per backend) with routed servings and shadows."""
    ledger = store
    # 8 servings of `ask` on the small model, 2 on the large; a single-route feature (left out).
    records = [serving(i, "ask", "small", "learned", 0.001) for i in range(8)]
    records += [serving(i, "ask", "large", "learned", 0.01) for i in range(8, 10)]
    records += [serving(i, "plain", "small", "single", 0.001) for i in range(10, 13)]
    shadow_request = serving(0, "ask", "large", "shadow", 0.012, operation="shadow")  # a shadow of serving s000
    shadow_request.id = "r000-shadow"
    records.append(shadow_request)
    await ledger.write(records)
    rows = [
        shadow(0, "weak_worse", 0.001, 0.011),
        shadow(1, "tie", 0.001, 0.009),
        shadow(2, "weak_better", 0.001, None),
    ]
    rows += [shadow(3, "invalid", 0.001, 0.010), shadow(4, "failed", 0.001, None)]
    async with ledger.engine.begin() as conn:
        await conn.execute(sa.insert(SHADOWS), rows)
    return ledger


async def test_the_report_shows_shares_regret_and_savings(routed: LedgerStore) -> None:
    report = await build_report(routed, CONFIG, ReportFilter())
    [ask] = report.routing
    assert (ask.feature, ask.strategy, ask.servings) == ("ask", "learned", 10)
    assert ask.share == {"small": 0.8, "large": 0.2}
    assert ask.judged == 3 and ask.regret == pytest.approx(1 / 3)  # invalid and failed verdicts are left out
    # Mean strong - weak over the pairs with both costs: (0.010 + 0.008 + 0.009) / 3, times 8 cheap servings.
    assert ask.saved_per_serving_usd == pytest.approx(0.009)
    assert ask.saved_usd == pytest.approx(8 * 0.009)
    data = orjson.loads(report_json(report))
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    assert data["routing"][0]["regret"] == pytest.approx(1 / 3)
    out = io.StringIO()
    render_table(report, Console(file=out, width=200, color_system=None))
    line = next(line for line in out.getvalue().splitlines() if "│ ask " in line and "learned" in line)
    assert "small 80.0%, large 20.0%" in line and "33.3%" in line and "$0.0720" in line


async def test_the_window_and_feature_filters_apply_to_routing(routed: LedgerStore) -> None:
    report = await build_report(routed, CONFIG, ReportFilter(since=T0 + 2))
    [ask] = report.routing
    assert ask.servings == 8 and ask.judged == 1 and ask.regret == 0.0  # s002: weak_better (invalid, failed: out)
    assert ask.saved_usd is not None and ask.saved_per_serving_usd == pytest.approx(0.009)  # s003's costs count
    assert (await build_report(routed, CONFIG, ReportFilter(features=("plain",)))).routing == []


async def test_the_tier_filter_applies_to_shadow_judgements_through_their_servings(routed: LedgerStore) -> None:
    async with routed.engine.begin() as conn:  # s000 and s001 were served to the free tier
        await conn.execute(sa.text("UPDATE servings SET tier = 'free' WHERE serving_id IN ('s000', 's001')"))
    [free] = (await build_report(routed, CONFIG, ReportFilter(tiers=("free",)))).routing
    assert free.servings == 2 and free.judged == 2 and free.regret == pytest.approx(1 / 2)  # s000 worse, s001 tie
    [default] = (await build_report(routed, CONFIG, ReportFilter(tiers=("default",)))).routing
    assert default.servings == 8 and default.judged == 1 and default.regret == 0.0  # s002 only
