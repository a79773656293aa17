"""Circuit breakers: the same semantics in process memory and in Redis, shared across workers."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import textwrap
from collections.abc import AsyncIterator, Callable

import pytest
import redis
import redis.asyncio

from modelplane.config.schema import BreakerConfig
from modelplane.serving.breaker import BreakerBackend, BreakerView, LocalBreakers, Permit, State
from modelplane.serving.breaker_redis import RedisBreakers
from services import REDIS_URL

CONFIG = BreakerConfig(window=10, min_requests=4, failure_rate=0.5, cooldown=5)
KEY = "openai/gpt-4o-mini"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def redis_breakers(prefix: str, clock: Callable[[], float]) -> RedisBreakers:
    return RedisBreakers(CONFIG, redis.asyncio.Redis.from_url(REDIS_URL), prefix, clock)


@pytest.fixture(params=["local", "redis"])
async def breakers(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[BreakerBackend]:
    backend: BreakerBackend
    if request.param == "local":
        backend = LocalBreakers(CONFIG, clock)
    else:
        backend = redis_breakers(request.getfixturevalue("redis_prefix"), clock)
    yield backend
    await backend.aclose()


async def settle(breakers: BreakerBackend) -> None:
    if isinstance(breakers, RedisBreakers):
        await breakers.flush()


async def record(breakers: BreakerBackend, *outcomes: bool, permit: Permit = Permit.ALLOW) -> None:
    for ok in outcomes:
        breakers.record(KEY, ok, permit)
    await settle(breakers)


async def view(breakers: BreakerBackend) -> BreakerView:
    (only,) = [view for view in await breakers.views() if view.key == KEY]
    return only


async def open_breaker(breakers: BreakerBackend) -> None:
    await record(breakers, *[False] * CONFIG.min_requests)
    assert (await view(breakers)).state is State.OPEN


async def test_stays_closed_under_min_requests_even_at_full_failure(breakers: BreakerBackend) -> None:
    await record(breakers, *[False] * (CONFIG.min_requests - 1))
    assert await breakers.acquire(KEY) is Permit.ALLOW
    assert await view(breakers) == BreakerView(KEY, State.CLOSED, 3, 3, None)


async def test_opens_at_the_failure_rate(breakers: BreakerBackend, clock: FakeClock) -> None:
    await record(breakers, True, True, True, False)  # 4 requests, 25 % failures
    assert (await view(breakers)).state is State.CLOSED
    await record(breakers, True, False)  # 6 requests, 2 failures: 33 %
    assert (await view(breakers)).state is State.CLOSED
    clock.now += 0.5
    await record(breakers, False)  # 7 requests, 3 failures: 43 %
    assert await breakers.acquire(KEY) is Permit.ALLOW
    await record(breakers, False)  # 8 requests, 4 failures: 50 %
    assert await view(breakers) == BreakerView(KEY, State.OPEN, 8, 4, 1000.5)
    assert await breakers.acquire(KEY) is Permit.DENY


async def test_denies_while_open(breakers: BreakerBackend, clock: FakeClock) -> None:
    await open_breaker(breakers)
    for _ in range(3):
        clock.now += (CONFIG.cooldown - 0.01) / 3
        assert await breakers.acquire(KEY) is Permit.DENY


async def test_exactly_one_probe_after_cooldown(breakers: BreakerBackend, clock: FakeClock) -> None:
    await open_breaker(breakers)
    clock.now += CONFIG.cooldown
    permits = await asyncio.gather(*(breakers.acquire(KEY) for _ in range(20)))
    assert permits.count(Permit.PROBE) == 1
    assert permits.count(Permit.DENY) == 19
    assert (await view(breakers)).state is State.HALF_OPEN


async def test_probe_success_closes_and_clears_the_window(breakers: BreakerBackend, clock: FakeClock) -> None:
    await open_breaker(breakers)
    clock.now += CONFIG.cooldown
    assert await breakers.acquire(KEY) is Permit.PROBE
    await record(breakers, True, permit=Permit.PROBE)
    assert await view(breakers) == BreakerView(KEY, State.CLOSED, 0, 0, None)
    assert await breakers.acquire(KEY) is Permit.ALLOW
    await record(breakers, *[False] * (CONFIG.min_requests - 1))  # the old failures no longer count
    assert await breakers.acquire(KEY) is Permit.ALLOW


async def test_probe_failure_reopens_with_a_fresh_cooldown(breakers: BreakerBackend, clock: FakeClock) -> None:
    await open_breaker(breakers)
    clock.now += CONFIG.cooldown + 1
    assert await breakers.acquire(KEY) is Permit.PROBE
    clock.now += 2
    await record(breakers, False, permit=Permit.PROBE)
    assert (await view(breakers)).state is State.OPEN
    assert (await view(breakers)).opened_at == clock.now
    clock.now += CONFIG.cooldown - 0.01
    assert await breakers.acquire(KEY) is Permit.DENY
    clock.now += 0.01
    assert await breakers.acquire(KEY) is Permit.PROBE


async def test_a_lost_probe_is_replaced_after_another_cooldown(breakers: BreakerBackend, clock: FakeClock) -> None:
    await open_breaker(breakers)
    clock.now += CONFIG.cooldown
    assert await breakers.acquire(KEY) is Permit.PROBE
    clock.now += CONFIG.cooldown - 0.01
    assert await breakers.acquire(KEY) is Permit.DENY
    clock.now += 0.01
    permits = await asyncio.gather(*(breakers.acquire(KEY) for _ in range(10)))
    assert permits.count(Permit.PROBE) == 1


async def test_retry_in_counts_down_to_the_next_probe(breakers: BreakerBackend, clock: FakeClock) -> None:
    assert await breakers.retry_in(KEY) is None  # never seen: closed
    await open_breaker(breakers)
    assert await breakers.retry_in(KEY) == pytest.approx(CONFIG.cooldown)
    clock.now += 2
    assert await breakers.retry_in(KEY) == pytest.approx(CONFIG.cooldown - 2)
    clock.now += CONFIG.cooldown
    assert await breakers.retry_in(KEY) == 0  # overdue: the next call is the probe
    assert await breakers.acquire(KEY) is Permit.PROBE
    clock.now += 1  # half-open, its probe in flight: replaced if it has not reported a cooldown later
    assert await breakers.retry_in(KEY) == pytest.approx(CONFIG.cooldown - 1)
    await record(breakers, True, permit=Permit.PROBE)
    assert await breakers.retry_in(KEY) is None


async def test_old_buckets_fall_out_of_the_window(breakers: BreakerBackend, clock: FakeClock) -> None:
    await record(breakers, *[False] * (CONFIG.min_requests - 1))
    clock.now += CONFIG.window / 2
    await record(breakers, True)
    assert await view(breakers) == BreakerView(KEY, State.CLOSED, 4, 3, None)
    clock.now += CONFIG.window / 2  # the first three failures are now out of the window
    await record(breakers, False)
    assert await view(breakers) == BreakerView(KEY, State.CLOSED, 2, 1, None)
    assert await breakers.acquire(KEY) is Permit.ALLOW


async def test_views_show_every_breaker(breakers: BreakerBackend, clock: FakeClock) -> None:
    assert await breakers.views() == []
    breakers.record("b/model", True, Permit.ALLOW)
    await open_breaker(breakers)
    clock.now += 1
    assert await breakers.views() == [  # sorted by key
        BreakerView("b/model", State.CLOSED, 1, 0, None),
        BreakerView(KEY, State.OPEN, 4, 4, 1000.0),
    ]


async def test_workers_agree_on_one_breaker(redis_prefix: str, clock: FakeClock) -> None:
    first, second = redis_breakers(redis_prefix, clock), redis_breakers(redis_prefix, clock)
    try:
        assert await second.acquire(KEY) is Permit.ALLOW
        await open_breaker(first)
        assert await first.acquire(KEY) is Permit.DENY
        assert await second.acquire(KEY) is Permit.ALLOW  # its cached answer: at most cache_seconds stale
        clock.now += second.cache_seconds
        assert await second.acquire(KEY) is Permit.DENY
        clock.now += CONFIG.cooldown
        permits = await asyncio.gather(*(b.acquire(KEY) for _ in range(10) for b in (first, second)))
        assert permits.count(Permit.PROBE) == 1
        assert (await second.views()) == (await first.views())
    finally:
        await first.aclose()
        await second.aclose()


async def test_another_process_opens_the_breaker(redis_prefix: str, clock: FakeClock) -> None:
    script = f"""
        import asyncio
        import redis.asyncio
        from modelplane.config.schema import BreakerConfig
        from modelplane.serving.breaker import Permit
        from modelplane.serving.breaker_redis import RedisBreakers

        async def main() -> None:
            config = BreakerConfig.model_validate_json({CONFIG.model_dump_json()!r})
            client = redis.asyncio.Redis.from_url({REDIS_URL!r})
            breakers = RedisBreakers(config, client, {redis_prefix!r}, clock=lambda: {clock.now!r})
            for _ in range(config.min_requests):
                breakers.record({KEY!r}, False, Permit.ALLOW)
            await breakers.aclose()

        asyncio.run(main())
    """
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", textwrap.dedent(script))
    assert await asyncio.wait_for(process.wait(), 30) == 0
    breakers = redis_breakers(redis_prefix, clock)
    try:
        assert await breakers.acquire(KEY) is Permit.DENY
        assert await breakers.views() == [BreakerView(KEY, State.OPEN, 4, 4, clock.now)]
    finally:
        await breakers.aclose()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_unreachable_redis_lets_every_call_through(caplog: pytest.LogCaptureFixture) -> None:
    breakers = RedisBreakers.from_url(CONFIG, f"redis://127.0.0.1:{unused_port()}/0")
    breakers.retry_after = 0  # try Redis on every call, to show the warning is still logged once
    with caplog.at_level(logging.WARNING, logger="modelplane.breaker"):
        for _ in range(CONFIG.min_requests * 2):
            breakers.record(KEY, False, Permit.ALLOW)
            await breakers.flush()
            assert await breakers.acquire(KEY) is Permit.ALLOW
        assert await breakers.views() == []
    await breakers.aclose()
    (warning,) = caplog.records
    assert warning.message.startswith("Redis unreachable for circuit breakers, letting every call through")


async def test_idle_keys_expire(redis_prefix: str, clock: FakeClock) -> None:
    breakers = redis_breakers(redis_prefix, clock)
    await open_breaker(breakers)
    await breakers.aclose()
    client = redis.Redis.from_url(REDIS_URL)
    state, window = f"{redis_prefix}:breaker:{KEY}", f"{redis_prefix}:breaker:{KEY}:window"
    try:
        assert client.ttl(window) == CONFIG.window + CONFIG.cooldown + 60
        assert 0 < client.ttl(state) <= 86_400  # an open breaker must outlive any pause in traffic
        assert 0 < client.ttl(f"{redis_prefix}:breakers") <= 86_400
    finally:
        client.close()
