"""Breakers in Redis, so every gateway worker (process) sees the same ones.

The semantics are those of `LocalBreakers` (see `breaker.py`); each transition is one Lua
script, so it is atomic across workers: of many workers asking after the cooldown, exactly
one gets the probe. The scripts take `now` from the Python clock, not Redis TIME, so tests
can drive time (and workers' clocks must roughly agree, as NTP makes them).

Keys, for a deployment `key`:

    {prefix}:breaker:{key}          hash: state, opened_at, probe_since
    {prefix}:breaker:{key}:window   hash: second -> "requests:failures", pruned to the window
    {prefix}:breakers               set of known keys, for `views()`

Every key expires when idle: the window after `window + cooldown + 60` s, the state hash and
the set after a day (an open breaker nobody asked about for a day is forgotten, i.e. closed).
The three keys of a script are not hash-tagged, so this needs a single Redis node, not a cluster.

Trade-offs, on purpose:

- `acquire` is on every call, so a closed answer is cached in this process for `cache_seconds`
  (0.25 s): a breaker another worker opened is seen at most that late. A failure recorded
  here, or any answer other than ALLOW, drops the cache entry.
- `record` never waits: it queues the outcome; one task sends the queue, pipelined, in order.
  `flush()` awaits it.
- Concurrent `acquire`s of one key in one process share one round trip (see `acquire`).
- A breaker must never take the gateway down: when Redis is unreachable, `acquire` answers
  ALLOW (fails open), outcomes are dropped, `views()` shows none, and one warning is logged
  per minute. After an error, Redis is left alone for `retry_after` seconds, so calls do not
  each pay a connect timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from modelplane.config.schema import BreakerConfig
from modelplane.serving.breaker import BreakerView, Permit, State, probe_in
from modelplane.serving.redis_state import SharedState

log = logging.getLogger("modelplane.breaker")

_OPEN_TTL = 86_400  # seconds; the state hash must outlive any pause in traffic

# KEYS: state. ARGV: now, cooldown, ttl. Returns 0 ALLOW, 1 PROBE, 2 DENY.
_ACQUIRE = """
local s = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probe_since')
if not s[1] or s[1] == 'closed' then return 0 end
local now, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2])
if s[1] == 'open' and s[2] and now - tonumber(s[2]) >= cooldown then
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_since', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
if s[1] == 'half_open' and s[3] and now - tonumber(s[3]) >= cooldown then
  redis.call('HSET', KEYS[1], 'probe_since', ARGV[1])  -- the last probe never reported back
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 2
"""

# KEYS: state, window, known. ARGV: key, now, ok, probe, window, min_requests, failure_rate,
# window_ttl, state_ttl. Returns 1 when this outcome opened the breaker.
_RECORD = """
local now = tonumber(ARGV[2])
local function known()
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[9])
end
local function open()
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[2])
  redis.call('HDEL', KEYS[1], 'probe_since')
  redis.call('EXPIRE', KEYS[1], ARGV[9])
end
if ARGV[4] == '1' then
  known()
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[1], 'state', 'closed')
    redis.call('HDEL', KEYS[1], 'opened_at', 'probe_since')
    redis.call('EXPIRE', KEYS[1], ARGV[9])
    redis.call('DEL', KEYS[2])
  else
    open()
  end
  return 0
end
local function parse(bucket)
  local sep = string.find(bucket, ':', 1, true)
  return tonumber(string.sub(bucket, 1, sep - 1)), tonumber(string.sub(bucket, sep + 1))
end
local failed = ARGV[3] == '1' and 0 or 1
local second = tostring(math.floor(now))
local bucket = redis.call('HGET', KEYS[2], second)
local requests, failures = 0, 0
if bucket then requests, failures = parse(bucket) end
redis.call('HSET', KEYS[2], second, (requests + 1) .. ':' .. (failures + failed))
redis.call('EXPIRE', KEYS[2], ARGV[8])
local state = redis.call('HGET', KEYS[1], 'state')
local may_open = failed == 1 and (not state or state == 'closed')
-- Prune when a new second starts (keeps the hash bounded) or when this failure may open.
if bucket and not may_open then return 0 end
if not bucket then known() end  -- once a second is enough to keep the key in the set
local horizon = now - tonumber(ARGV[5])
local total_r, total_f = 0, 0
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do
  if tonumber(flat[i]) <= horizon then
    redis.call('HDEL', KEYS[2], flat[i])
  else
    local r, f = parse(flat[i + 1])
    total_r, total_f = total_r + r, total_f + f
  end
end
if may_open and total_r >= tonumber(ARGV[6]) and total_f >= tonumber(ARGV[7]) * total_r then
  open()
  return 1
end
return 0
"""

_PERMITS = (Permit.ALLOW, Permit.PROBE, Permit.DENY)

_Hash = dict[bytes | str, bytes | str]  # HGETALL, with or without decode_responses


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBreakers:
    """Breakers shared by every gateway worker through Redis; fails open when Redis is down."""

    def __init__(
        self,
        config: BreakerConfig,
        client: redis.asyncio.Redis,
        prefix: str = "modelplane",
        clock: Callable[[], float] = time.time,
        *,
        cache_seconds: float = 0.25,
        retry_after: float = 1.0,
    ) -> None:
        self.config = config
        self.cache_seconds = cache_seconds
        self._client = client
        self._prefix = prefix
        self._now = clock
        self._acquire = client.register_script(_ACQUIRE)
        self._record = client.register_script(_RECORD)
        self._allowed: dict[str, float] = {}  # key -> when Redis last answered ALLOW
        self._asking: dict[str, asyncio.Future[Permit]] = {}  # key -> the acquire in flight
        self._shared: SharedState[tuple[str, bool, Permit, float]] = SharedState(
            client, "circuit breakers, letting every call through", self._write_outcome, log, retry_after=retry_after
        )

    @property
    def retry_after(self) -> float:
        return self._shared.retry_after

    @retry_after.setter
    def retry_after(self, seconds: float) -> None:
        self._shared.retry_after = seconds

    @classmethod
    def from_url(
        cls, config: BreakerConfig, url: str, prefix: str = "modelplane", *, timeout: float = 0.5
    ) -> RedisBreakers:
        """Breakers on the Redis at `url`, with short socket timeouts: a slow Redis must not slow calls."""
        client = redis.asyncio.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(config, client, prefix)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:breaker:{key}"

    async def acquire(self, key: str) -> Permit:
        now = self._now()
        allowed_at = self._allowed.get(key)
        if allowed_at is not None and 0 <= now - allowed_at < self.cache_seconds:
            return Permit.ALLOW
        if self._shared.down:
            return Permit.ALLOW
        asking = self._asking.get(key)
        if asking is not None:
            # Join the question in flight: it is as if this call came just after it, when a
            # probe it claimed leaves nothing but DENY. One round trip per key at a time.
            permit = await asyncio.shield(asking)
            return Permit.DENY if permit is Permit.PROBE else permit
        asking = self._asking[key] = asyncio.ensure_future(self._ask(key, now))
        asking.add_done_callback(lambda _: self._asking.pop(key, None))
        return await asyncio.shield(asking)

    async def _ask(self, key: str, now: float) -> Permit:
        try:
            code = await self._acquire(keys=[self._key(key)], args=[now, self.config.cooldown, _OPEN_TTL])
        except (RedisError, OSError) as exc:
            self._shared.unreachable(exc)
            return Permit.ALLOW
        permit = _PERMITS[int(code)]
        if permit is Permit.ALLOW:
            self._allowed[key] = now
        else:
            self._allowed.pop(key, None)
        return permit

    def record(self, key: str, ok: bool, permit: Permit) -> None:
        if not ok:
            self._allowed.pop(key, None)
        self._shared.send((key, ok, permit, self._now()))

    async def _write_outcome(self, outcome: tuple[str, bool, Permit, float], pipe: Any) -> None:
        key, ok, permit, now = outcome
        await self._record(self._record_keys(key), self._record_args(key, ok, permit, now), pipe)

    def _record_keys(self, key: str) -> list[str]:
        return [self._key(key), f"{self._key(key)}:window", f"{self._prefix}:breakers"]

    def _record_args(self, key: str, ok: bool, permit: Permit, now: float) -> list[str | float]:
        config = self.config
        window_ttl = math.ceil(config.window + config.cooldown) + 60  # `config` may change on a reload
        probe = int(permit is Permit.PROBE)
        return [
            key,
            now,
            int(ok),
            probe,
            config.window,
            config.min_requests,
            config.failure_rate,
            window_ttl,
            _OPEN_TTL,
        ]

    async def retry_in(self, key: str) -> float | None:
        """As `LocalBreakers.retry_in`; None when Redis is unreachable (the breakers then let calls through)."""
        try:
            state, opened_at, probe_since = await self._client.hmget(
                self._key(key), ["state", "opened_at", "probe_since"]
            )
        except (RedisError, OSError) as exc:
            self._shared.unreachable(exc)
            return None
        if state is None or _text(state) == State.CLOSED:
            return None
        return probe_in(
            State(_text(state)),
            None if opened_at is None else float(opened_at),
            None if probe_since is None else float(probe_since),
            self.config.cooldown,
            self._now(),
        )

    async def flush(self) -> None:
        """Wait until every outcome recorded so far has reached Redis (or failed to)."""
        await self._shared.flush()

    async def views(self) -> list[BreakerView]:
        """Every known breaker, sorted by key; none when Redis is unreachable (a warning says so)."""
        try:
            return await self._views()
        except (RedisError, OSError) as exc:
            self._shared.unreachable(exc)
            return []

    async def _views(self) -> list[BreakerView]:
        now = self._now()
        known = f"{self._prefix}:breakers"
        keys = sorted(_text(member) for member in await self._client.smembers(known))
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self._key(key))
                pipe.hgetall(f"{self._key(key)}:window")
            replies = await pipe.execute()
        views, gone = [], []
        for key, state, window in zip(keys, replies[::2], replies[1::2], strict=True):
            if not state and not window:
                gone.append(key)  # expired: idle for longer than its TTL
                continue
            views.append(self._view(key, now, state, window))
        if gone:
            await self._client.srem(known, *gone)
        return views

    def _view(self, key: str, now: float, state: _Hash, window: _Hash) -> BreakerView:
        fields = {_text(name): _text(value) for name, value in state.items()}
        requests = failures = 0
        for second, bucket in window.items():
            if float(_text(second)) > now - self.config.window:
                r, f = _text(bucket).split(":")
                requests, failures = requests + int(r), failures + int(f)
        opened_at = fields.get("opened_at")
        opened = None if opened_at is None else float(opened_at)
        return BreakerView(key, State(fields.get("state", "closed")), requests, failures, opened)

    async def aclose(self) -> None:
        """Send the outcomes still pending, then close the client."""
        await self._shared.aclose()
