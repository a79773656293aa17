"""Two gateway processes sharing one Redis enforce one rate limit and one budget: no double spend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from gateways import GatewayProcess
from modelplane.errors import RateLimited
from modelplane.server.errors import error_response
from modelplane.serving.auth import hash_key
from modelplane.serving.limits import day_window
from services import REDIS_URL
from upstream import ScriptedUpstream

TOKENS = 15  # per serving: the scripted upstream's default answer has 10 prompt and 5 completion tokens


def write_config(tmp_path: Path, upstream: ScriptedUpstream, redis_prefix: str) -> Path:
    config = tmp_path / "modelplane.yaml"
    config.write_text(
        f"""
providers:
  up: {{kind: openai, base_url: "{upstream.base_url}"}}
models:
  m: {{provider: up, price: {{input: 1, output: 1}}}}
features:
  f: {{route: {{models: [m]}}}}
tenants:
  budgeted: {{budget: {{tokens_per_day: {40 * TOKENS}}}}}
keys:
  - {{hash: "{hash_key("burst-key")}", tenant: bursty, name: burst, rpm: 15}}
  - {{hash: "{hash_key("budget-key")}", tenant: budgeted}}
redis: {{url: "{REDIS_URL}", prefix: "{redis_prefix}"}}
"""
    )
    return config


async def ask_all(gateways: list[GatewayProcess], key: str, n: int) -> list[httpx.Response]:
    """`n` concurrent requests, alternating between the gateways."""
    body = {"model": "f", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(f"{gateways[i % len(gateways)].url}/v1/chat/completions", json=body, headers=headers)
                for i in range(n)
            )
        )


def away_from_the_turn_of_a_minute(margin: float = 5.0) -> None:
    """rpm windows are calendar minutes: a burst that straddles two of them may see twice the limit."""
    left = 60.0 - time.time() % 60.0
    if left < margin:
        time.sleep(left + 0.1)


@pytest.fixture
def pair(
    tmp_path: Path, redis_prefix: str, launch_gateway: Callable[..., GatewayProcess]
) -> Iterator[tuple[ScriptedUpstream, list[GatewayProcess]]]:
    """Two `modelplane serve` processes on one Redis prefix, in front of one upstream."""
    with ScriptedUpstream.in_thread() as upstream:
        config = write_config(tmp_path, upstream, redis_prefix)
        gateways = [launch_gateway(tmp_path, tmp_path / f"home-{i}", config) for i in range(2)]
        yield upstream, gateways
        assert all(g.stop() == 0 for g in gateways)


def test_two_workers_admit_exactly_rpm_requests_and_refuse_the_rest_with_429(
    pair: tuple[ScriptedUpstream, list[GatewayProcess]],
) -> None:
    upstream, gateways = pair
    away_from_the_turn_of_a_minute()
    responses = asyncio.run(ask_all(gateways, "burst-key", 40))
    assert sorted(r.status_code for r in responses) == [200] * 15 + [429] * 25
    assert upstream.count() == 15
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        error = refused.json()["error"]
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
        assert error["param"] is None
        assert "key 'burst' reached its limit of 15 requests per minute" in error["message"]


def test_two_workers_charge_one_budget_without_losing_a_token(
    pair: tuple[ScriptedUpstream, list[GatewayProcess]], redis_prefix: str
) -> None:
    upstream, gateways = pair
    # The budget is exactly 40 servings: none is refused before all 40 are charged.
    responses = asyncio.run(ask_all(gateways, "budget-key", 40))
    assert [r.status_code for r in responses] == [200] * 40
    counter = f"{redis_prefix}:limits:tenant:budgeted:{day_window(time.time()).id}"
    client = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + 10
    while int(client.hget(counter, "tokens") or 0) < 40 * TOKENS and time.monotonic() < deadline:
        time.sleep(0.05)  # charges are sent behind the answers
    time.sleep(0.2)
    assert int(client.hget(counter, "tokens") or 0) == 40 * TOKENS  # every increment landed, none twice
    assert int(client.hget(counter, "usd_nano") or 0) == 40 * 15_000  # 15 tokens at $1 per 1M, in nano-USD
    assert 0 < client.ttl(counter) <= 86_400 + 120
    client.close()
    # Spent: both workers now refuse, whichever the client asks.
    for refused in asyncio.run(ask_all(gateways, "budget-key", 4)):
        assert refused.status_code == 429 and refused.headers["retry-after"].isdigit()
        assert refused.json()["error"]["code"] == "insufficient_quota"
    assert upstream.count() == 40


def test_the_429_is_openai_shaped_with_a_whole_retry_after() -> None:
    response = error_response(RateLimited("over", 2.2, error_type="tokens"))
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert orjson.loads(response.body) == {
        "error": {"message": "over", "type": "tokens", "param": None, "code": "rate_limit_exceeded"}
    }
