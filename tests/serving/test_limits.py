"""Rate limits and budgets: the same semantics in process memory and in Redis, on a fake clock."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis.asyncio

from fakes import FakeProvider, Reply
from modelplane.config.load import LoadedConfig, parse_config
from modelplane.config.schema import Config
from modelplane.errors import RateLimited
from modelplane.ledger.records import CallRecord, ServingRecord
from modelplane.ledger.store import LedgerStore
from modelplane.providers.base import Usage
from modelplane.serving import pipeline
from modelplane.serving.auth import Caller, hash_key
from modelplane.serving.gateway import Gateway
from modelplane.serving.limits import (
    Check,
    Counters,
    Limiter,
    LocalCounters,
    day_window,
    minute_window,
    month_window,
)
from modelplane.serving.limits_redis import RedisCounters
from modelplane.serving.state import Inbound, Serving
from services import REDIS_URL

BASE = """
providers:
  up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  small: {provider: up, price: {input: 1.0, output: 1.0}}
  mystery: {provider: up}
features:
  reply: {route: {models: [small]}REPLY}
  other: {route: {models: [small]}}
  unpriced: {route: {models: [mystery]}}
"""
ACME = Caller("acme", "default", key=hash_key("acme-key").removeprefix("sha256:"))
GLOBEX = Caller("globex", "default", key=hash_key("globex-key").removeprefix("sha256:"))


def at(text: str) -> float:
    """Unix seconds of an ISO time in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(extra: str = "", acme: str = "", globex: str = "", reply: str = "") -> Config:
    """The base config plus `extra` sections, and more fields for the keys and the `reply` feature."""
    keys = f"""
keys:
  - {{hash: "{hash_key("acme-key")}", tenant: acme, name: acme-ci {acme}}}
  - {{hash: "{hash_key("globex-key")}", tenant: globex {globex}}}
"""
    return parse_config(BASE.replace("REPLY", reply) + keys + extra, env={})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at("2025-03-10T12:00:05"))


Factory = Callable[[Config], Limiter]


@pytest.fixture(params=["local", "redis"])
async def make(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Factory]:
    """Limiters over one backend; with Redis, each is a separate client on one prefix, like workers."""
    made: list[Limiter] = []

    def factory(cfg: Config) -> Limiter:
        counters: Counters
        if request.param == "local":
            counters = shared[0] if made else LocalCounters(clock)
            shared.append(counters)
        else:
            client = redis.asyncio.Redis.from_url(REDIS_URL)
            counters = RedisCounters(client, request.getfixturevalue("redis_prefix"))
        limiter = Limiter(cfg, counters, clock)
        made.append(limiter)
        return limiter

    shared: list[Counters] = []
    yield factory
    for limiter in made:
        await limiter.aclose()


def served(caller: Caller, feature: str, *calls: tuple[int, int, float | None]) -> tuple[Serving, ServingRecord]:
    """A recorded serving whose calls used (input tokens, output tokens, USD or None when unpriced)."""
    serving = Serving("chat", caller=caller, feature=feature)
    records = [
        CallRecord("c", "r", "s", 0.0, i, "m", "p", "ok", input_tokens=i_t, output_tokens=o_t, cost_usd=usd)
        for i, (i_t, o_t, usd) in enumerate(calls)
    ]
    priced = [c.cost_usd for c in records]
    record = ServingRecord(
        "r", "s", 0.0, caller.tenant, caller.tier, feature, "chat", "ok", 200,
        input_tokens=sum(c.input_tokens for c in records),
        output_tokens=sum(c.output_tokens for c in records),
        cost_usd=None if None in priced else sum(c for c in priced if c is not None),
        calls=records,
    )  # fmt: skip
    return serving, record


async def charge(limiter: Limiter, caller: Caller, feature: str, *calls: tuple[int, int, float | None]) -> None:
    limiter.charge(*served(caller, feature, *calls))
    await limiter.counters.flush()


async def refusal(limiter: Limiter, caller: Caller = ACME, feature: str = "reply") -> RateLimited:
    with pytest.raises(RateLimited) as info:
        await limiter.admit(caller, feature)
    return info.value


# ---------------------------------------------------------------- windows


def test_windows_are_calendar_aligned_in_utc() -> None:
    now = at("2024-12-31T23:59:30")
    assert minute_window(now).end == at("2025-01-01T00:00:00")
    assert day_window(now).id == "d20241231" and day_window(now).end == at("2025-01-01T00:00:00")
    assert month_window(now).id == "m202412" and month_window(now).end == at("2025-01-01T00:00:00")
    assert month_window(at("2024-02-10T00:00:00")).end == at("2024-03-01T00:00:00")  # a leap year's February
    assert day_window(at("2025-03-10T00:00:00")).start == at("2025-03-10T00:00:00")


# ---------------------------------------------------------------- requests per minute


async def test_rpm_refuses_the_request_after_the_limit_until_the_minute_turns(make: Factory, clock: FakeClock) -> None:
    limiter = make(config(acme=", rpm: 3"))
    for _ in range(3):
        await limiter.admit(ACME, "reply")
    refused = await refusal(limiter)
    assert refused.status == 429 and refused.error_class == "rate_limited"
    assert refused.retry_after == pytest.approx(55.0)  # the clock is at 12:00:05
    assert refused.type == "requests" and refused.code == "rate_limit_exceeded"
    assert "key 'acme-ci'" in refused.message and "3 requests per minute" in refused.message
    await limiter.admit(GLOBEX, "reply")  # another key has its own count (and here no limit)
    clock.now += 54.9
    await refusal(limiter)  # refusals did not count, but the minute is still the same
    clock.now += 0.1
    for _ in range(3):
        await limiter.admit(ACME, "reply")
    await refusal(limiter)


async def test_rpm_admits_exactly_the_limit_under_concurrency(make: Factory) -> None:
    cfg = config(acme=", rpm: 10")
    workers = [make(cfg), make(cfg)]  # with Redis: two clients, as two gateway processes would be

    async def ask(i: int) -> bool:
        try:
            await workers[i % 2].admit(ACME, "reply")
        except RateLimited:
            return False
        return True

    admitted = await asyncio.gather(*(ask(i) for i in range(50)))
    assert sum(admitted) == 10


# ---------------------------------------------------------------- tokens per minute


async def test_tpm_checks_the_tokens_already_used_this_minute(make: Factory, clock: FakeClock) -> None:
    limiter = make(config(acme=", tpm: 1000"))
    await limiter.admit(ACME, "reply")
    await charge(limiter, ACME, "reply", (500, 100, 0.001))
    await limiter.admit(ACME, "reply")
    # The request cannot know its tokens in advance: the last one admitted overshoots the limit.
    await charge(limiter, ACME, "reply", (300, 200, 0.001))
    refused = await refusal(limiter)
    assert refused.type == "tokens" and "1000 tokens per minute" in refused.message
    clock.now += 55
    await limiter.admit(ACME, "reply")


# ---------------------------------------------------------------- budgets


async def test_tenant_token_budget_rolls_over_at_utc_midnight(make: Factory, clock: FakeClock) -> None:
    clock.now = at("2025-03-10T23:59:30")
    limiter = make(config("tenants: {acme: {budget: {tokens_per_day: 100}}}"))
    await charge(limiter, ACME, "reply", (60, 30, 0.5))  # two calls of one serving: the sum counts
    await limiter.admit(ACME, "reply")
    await charge(limiter, ACME, "other", (5, 5, None))  # an unpriced call still adds its tokens
    refused = await refusal(limiter, feature="other")  # a tenant's budget covers all its features
    assert refused.type == "insufficient_quota" and refused.code == "insufficient_quota"
    assert "tenant 'acme'" in refused.message and "100 tokens per day" in refused.message
    assert refused.retry_after == pytest.approx(30.0)
    await limiter.admit(GLOBEX, "reply")  # other tenants are untouched
    clock.now = at("2025-03-11T00:00:00")
    await limiter.admit(ACME, "reply")


async def test_tenant_usd_budget_per_month_rolls_over_on_the_first(make: Factory, clock: FakeClock) -> None:
    clock.now = at("2024-12-31T10:00:00")
    limiter = make(config("tenants: {acme: {budget: {usd_per_month: 2.5}}}"))
    await charge(limiter, ACME, "reply", (100, 100, 1.25))
    clock.now = at("2024-12-31T23:00:00")
    await charge(limiter, ACME, "reply", (100, 100, 1.25))
    refused = await refusal(limiter)
    assert "2.5 USD per month" in refused.message
    assert refused.retry_after == pytest.approx(3600.0)
    clock.now = at("2025-01-01T00:00:00")
    await limiter.admit(ACME, "reply")


async def test_unpriced_calls_add_no_usd(make: Factory) -> None:
    limiter = make(config("tenants: {acme: {budget: {usd_per_day: 1}}}"))
    for _ in range(5):
        await charge(limiter, ACME, "unpriced", (1000, 1000, None))
    await limiter.admit(ACME, "unpriced")
    await charge(limiter, ACME, "reply", (10, 10, 0.6), (10, 10, None), (10, 10, 0.4))  # the priced part: $1
    await refusal(limiter)


async def test_feature_budgets_count_every_caller(make: Factory, clock: FakeClock) -> None:
    limiter = make(config(reply=", budget: {usd_per_day: 0.01, tokens_per_month: 5000}"))
    await charge(limiter, ACME, "reply", (1000, 1000, 0.006))
    await charge(limiter, GLOBEX, "reply", (1000, 1000, 0.004))
    refused = await refusal(limiter, GLOBEX)
    assert "feature 'reply'" in refused.message and "0.01 USD per day" in refused.message
    await limiter.admit(ACME, "other")  # the budget is the feature's, not the tenant's
    clock.now = at("2025-03-11T00:00:00")  # a new day: USD renewed; the month has 1000 tokens left
    await limiter.admit(ACME, "reply")
    await charge(limiter, ACME, "reply", (500, 500, 0.001))
    refused = await refusal(limiter)
    assert "5000 tokens per month" in refused.message
    clock.now = at("2025-04-01T00:00:00")
    await limiter.admit(ACME, "reply")


async def test_a_spent_month_is_named_before_a_spent_day(make: Factory, clock: FakeClock) -> None:
    limiter = make(config("tenants: {acme: {budget: {tokens_per_day: 10, tokens_per_month: 10}}}"))
    await charge(limiter, ACME, "reply", (10, 0, None))
    refused = await refusal(limiter)
    assert "per month" in refused.message
    assert refused.retry_after == pytest.approx(at("2025-04-01T00:00:00") - clock.now)


async def test_a_reload_keeps_the_counts(make: Factory) -> None:
    limiter = make(config(acme=", rpm: 5"))
    for _ in range(3):
        await limiter.admit(ACME, "reply")
    limiter.configure(config(acme=", rpm: 3"))
    await refusal(limiter)
    limiter.configure(config())
    await limiter.admit(ACME, "reply")


# ---------------------------------------------------------------- cost when nothing is configured


class Untouchable:
    """Counters that fail the test when used."""

    async def admit(self, checks: object) -> int | None:
        raise AssertionError("admit reached the counters")

    def charge(self, charges: object) -> None:
        raise AssertionError("charge reached the counters")

    async def flush(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_nothing_configured_for_the_caller_touches_no_counter() -> None:
    limiter = Limiter(config("tenants: {globex: {budget: {usd_per_day: 1}}}", globex=", rpm: 1"), Untouchable())
    await limiter.admit(ACME, "reply")
    limiter.charge(*served(ACME, "reply", (100, 100, 1.0)))
    limiter.configure(config())
    await limiter.admit(GLOBEX, "reply")


# ---------------------------------------------------------------- Redis down


async def test_redis_down_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    counters = RedisCounters(client, "down", retry_after=0.0)
    limiter = Limiter(config(acme=", rpm: 1"), counters)
    with caplog.at_level(logging.WARNING, logger="modelplane.limits"):
        for _ in range(3):
            await limiter.admit(ACME, "reply")
            await charge(limiter, ACME, "reply", (1, 1, 0.1))
    assert len([r for r in caplog.records if "Redis unreachable" in r.message]) == 1
    await limiter.aclose()


# ---------------------------------------------------------------- through the pipeline

PIPELINE = """
tenants: {acme: {budget: {tokens_per_day: 250}}}
"""


@pytest.fixture(params=["local", "redis"])
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    shared = ""
    if request.param == "redis":
        shared = f'redis: {{url: "{REDIS_URL}", prefix: "{request.getfixturevalue("redis_prefix")}"}}\n'
    cfg = config(PIPELINE + shared, acme=", rpm: 4")
    cfg = cfg.model_copy(update={"ledger": cfg.ledger.model_copy(update={"url": f"sqlite:///{tmp_path}/l.db"})})
    gw = await Gateway.start(LoadedConfig(cfg, "v-test", "test", False, tmp_path), providers={"up": FakeProvider("up")})
    yield gw
    await gw.close()


def chat(serving_id: str | None = None) -> Inbound:
    body = orjson.dumps({"model": "reply", "messages": [{"role": "user", "content": "hi"}]})
    return Inbound(body, "Bearer acme-key", serving_id=serving_id)


async def test_pipeline_charges_each_serving_and_refuses_with_429(gateway: Gateway, tmp_path: Path) -> None:
    fake = gateway.runtime.providers["up"]
    assert isinstance(fake, FakeProvider)
    fake.script(*[Reply(usage=Usage(input_tokens=100, output_tokens=20))] * 3)
    for _ in range(3):  # 120 tokens each: 240 < 250, so the third is admitted and overshoots
        await pipeline.chat(gateway, chat())
        await gateway.limiter.counters.flush()
    with pytest.raises(RateLimited, match="tenant 'acme' reached its limit of 250 tokens per day"):
        await pipeline.chat(gateway, chat())
    await gateway.recorder.writer.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    rows = await store.servings()
    await store.close()
    outcomes = sorted((r["http_status"], r["error_class"] or "") for r in rows)
    assert outcomes == [(200, ""), (200, ""), (200, ""), (429, "rate_limited")]


async def test_requests_of_one_serving_each_count_against_rpm(gateway: Gateway) -> None:
    # `X-Modelplane-Serving` groups requests for the economics; the rate limit still counts requests.
    fake = gateway.runtime.providers["up"]
    assert isinstance(fake, FakeProvider)
    fake.script(*[Reply(usage=Usage())] * 4)  # no tokens: the tenant's budget stays out of it
    for _ in range(4):
        await pipeline.chat(gateway, chat(serving_id="one-serving"))
        await gateway.limiter.counters.flush()
    with pytest.raises(RateLimited, match="4 requests per minute"):
        await pipeline.chat(gateway, chat(serving_id="one-serving"))


def test_check_refusal_never_asks_for_a_retry_sooner_than_a_second() -> None:
    limiter = Limiter(config(acme=", rpm: 1"), LocalCounters())
    scope = limiter._keys[ACME.key]
    refused = Check(scope.limits[0], "c", 60, 0.2, reserve=True).refusal()
    assert "retry in 1 s" in refused.message and refused.retry_after == 0.2
