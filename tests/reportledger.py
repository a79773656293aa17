"""A small ledger whose report is worked out by hand in the tests, and synthetic traffic for projections."""

from __future__ import annotations

from modelplane.config.load import parse_config
from modelplane.config.schema import Config
from modelplane.ledger import CallRecord, LedgerStore, ServingRecord

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86400.0

CONFIG_YAML = """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: k}}
models:
  small: {provider: up, name: gpt-4o-mini, price: {input: 1.0, cached_input: 0.5, output: 2.0}}
  large: {provider: up, name: gpt-4o, price: {input: 10.0, output: 20.0}}
  half: {provider: up, price: {input: 5.0, output: 10.0}}
  mystery: {provider: up}
tiers:
  free: {revenue_per_serving: 0}
  pro: {monthly_price: 20, expected_servings_per_month: 400}
features:
  support-reply: {route: {models: [small, large]}}
  summarize: {route: {models: [large]}}
"""


def config() -> Config:
    return parse_config(CONFIG_YAML, env={})


def call(request: str, serving: str, ts: float, model: str, inp: int, out: int, cost: float | None) -> CallRecord:
    return CallRecord(
        id=f"{request}-{model}",
        request_id=request,
        serving_id=serving,
        ts=ts,
        attempt=0,
        model=model,
        provider="up",
        status="ok",
        input_tokens=inp,
        output_tokens=out,
        cost_usd=cost,
        latency_ms=1.0,
    )


def request(
    rid: str,
    serving: str,
    *,
    feature: str,
    tier: str,
    ts: float,
    latency: float,
    calls: list[tuple[str, int, int, float | None]],
    cache: str = "miss",
    fallback: int = 0,
    status: str = "ok",
) -> ServingRecord:
    records = [call(rid, serving, ts, *c) for c in calls]
    costs = [c.cost_usd for c in records]
    return ServingRecord(
        id=rid,
        serving_id=serving,
        ts=ts,
        tenant="acme",
        tier=tier,
        feature=feature,
        operation="chat",
        status=status,
        http_status=200,
        model=records[-1].model if records else None,
        cache=cache,
        fallback_depth=fallback,
        input_tokens=sum(c.input_tokens for c in records),
        output_tokens=sum(c.output_tokens for c in records),
        cost_usd=None if None in costs else sum(c for c in costs if c is not None),
        latency_ms=latency,
        calls=records,
    )


def hand_ledger() -> list[ServingRecord]:
    """Seven servings in eight requests; costs at the config's prices (USD per 1M tokens)."""
    return [
        # support-reply / pro
        request(
            "r1", "s1", feature="support-reply", tier="pro", ts=T0, latency=100, calls=[("small", 1000, 500, 0.002)]
        ),
        request(
            "r2a", "s2", feature="support-reply", tier="pro", ts=T0 + 10, latency=200, calls=[("large", 100, 50, 0.002)]
        ),
        request(
            "r2b",
            "s2",
            feature="support-reply",
            tier="pro",
            ts=T0 + 11,
            latency=300,
            fallback=1,
            calls=[("small", 1000, 0, 0.001)],
        ),
        request("r3", "s3", feature="support-reply", tier="pro", ts=T0 + 20, latency=5, cache="exact", calls=[]),
        request(
            "r4",
            "s4",
            feature="support-reply",
            tier="pro",
            ts=T0 + 30,
            latency=400,
            status="escalated",
            calls=[("small", 2000, 1000, 0.004)],
        ),
        # support-reply / free
        request(
            "r5",
            "s5",
            feature="support-reply",
            tier="free",
            ts=T0 + 40,
            latency=50,
            calls=[("mystery", 500, 100, None)],
        ),
        request(
            "r6", "s6", feature="support-reply", tier="free", ts=T0 + 50, latency=60, calls=[("small", 500, 250, 0.001)]
        ),
        # summarize / free, two days later
        request(
            "r7",
            "s7",
            feature="summarize",
            tier="free",
            ts=T0 + 2 * DAY,
            latency=1000,
            calls=[("large", 1000, 1000, 0.03)],
        ),
    ]


def steady_traffic(days: int = 10, per_day: int = 100) -> list[ServingRecord]:
    """Every serving: one `large` call of 1000 in / 100 out = $0.012, no cache."""
    return [
        request(
            f"q{d}-{i}",
            f"q{d}-{i}",
            feature="support-reply",
            tier="pro",
            ts=T0 + d * DAY + i,
            latency=10,
            calls=[("large", 1000, 100, 0.012)],
        )
        for d in range(days)
        for i in range(per_day)
    ]


async def seed(url: str, records: list[ServingRecord]) -> None:
    store = LedgerStore.from_url(url)
    await store.open()
    try:
        await store.write(records)
    finally:
        await store.close()
