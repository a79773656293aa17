"""Rate-limit and budget counters in Redis, so every gateway worker counts against the same limits.

The semantics are those of `LocalCounters` (see `limits.py`). A counter is a hash per scope and
window, `{prefix}:limits:{scope}:{window}` (e.g. `modelplane:limits:tenant:acme:d20250301`),
with fields `requests`, `tokens` and `usd_nano`, and expires a minute after its window ends.

- `admit` is one Lua script: it checks every limit and, only when none is reached, counts the
  request, so of many workers racing for the last request of a minute exactly one gets it.
  A script's keys are not hash-tagged: this needs a single Redis node, not a cluster.
- `charge` never waits: it queues the serving's charges; one task sends the queue in
  pipelined batches, in order. Each charge is one script (HINCRBY and EXPIRE together), so no
  increment is lost between workers. `flush()` awaits it.
- Limits must never take the gateway down: when Redis is unreachable, `admit` admits (fails
  open), charges are dropped, and one warning is logged per minute. After an error, Redis is
  left alone for `retry_after` seconds, so requests do not each pay a connect timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

import redis.asyncio
from redis.exceptions import RedisError

from modelplane.serving.limits import Charge, Check

log = logging.getLogger("modelplane.limits")

_WARN_EVERY = 60.0
_BATCH = 256  # servings' charges per pipelined round trip

# KEYS: one counter per check. ARGV: per check, field, limit, ttl, reserve. Returns 0 when
# admitted (after counting the request on every reserving check), else the 1-based index of
# the first check whose limit is reached.
_ADMIT = """
for i = 1, #KEYS do
  local used = tonumber(redis.call('HGET', KEYS[i], ARGV[4 * i - 3]) or '0')
  if used >= tonumber(ARGV[4 * i - 2]) then return i end
end
for i = 1, #KEYS do
  if ARGV[4 * i] == '1' then
    redis.call('HINCRBY', KEYS[i], ARGV[4 * i - 3], 1)
    redis.call('EXPIRE', KEYS[i], ARGV[4 * i - 1])
  end
end
return 0
"""

# KEYS: one counter per charge. ARGV: per charge, field, amount, ttl.
_CHARGE = """
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], ARGV[3 * i - 2], ARGV[3 * i - 1])
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
return 0
"""


class RedisCounters:
    """Counters shared by every gateway worker through Redis; fails open when Redis is down."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "modelplane", *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        self._client = client
        self._prefix = f"{prefix}:limits:"
        self._admit = client.register_script(_ADMIT)
        self._charge = client.register_script(_CHARGE)
        self._outbox: list[Sequence[Charge]] = []
        self._sender: asyncio.Task[None] | None = None
        self._down_until = -math.inf  # time.monotonic(): leave Redis alone until then
        self._warned_at = -math.inf

    @classmethod
    def from_url(cls, url: str, prefix: str = "modelplane", *, timeout: float = 0.5) -> RedisCounters:
        """Counters in the Redis at `url`, with short socket timeouts: a slow Redis must not slow requests."""
        client = redis.asyncio.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix)

    async def admit(self, checks: Sequence[Check]) -> int | None:
        if time.monotonic() < self._down_until:
            return None
        keys = [self._prefix + check.counter for check in checks]
        args: list[str | int] = []
        for check in checks:
            args += [check.limit.field, check.limit.value, check.ttl, int(check.reserve)]
        try:
            refused = int(await self._admit(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return None
        return None if refused == 0 else refused - 1

    def charge(self, charges: Sequence[Charge]) -> None:
        if not charges or time.monotonic() < self._down_until:
            return
        self._outbox.append(charges)
        if self._sender is None or self._sender.done():
            try:
                self._sender = asyncio.get_running_loop().create_task(self._send())
            except RuntimeError:
                self._outbox.clear()
                log.error("charges dropped: charge() needs a running event loop")

    async def _send(self) -> None:
        """Send the outbox in pipelined batches: one connection, one round trip per batch."""
        while self._outbox:
            batch, self._outbox = self._outbox[:_BATCH], self._outbox[_BATCH:]
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for charges in batch:
                        keys = [self._prefix + charge.counter for charge in charges]
                        args: list[str | int] = []
                        for charge in charges:
                            args += [charge.field, charge.amount, charge.ttl]
                        await self._charge(keys, args, pipe)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self._outbox.clear()  # the rest would only wait for the same timeout
                self._unreachable(exc)
            except Exception:
                log.exception("charges failed in Redis")

    def _unreachable(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self.retry_after
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning("Redis unreachable for rate limits and budgets, admitting every request: %s", exc)

    async def flush(self) -> None:
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def aclose(self) -> None:
        """Send the charges still pending, then close the client."""
        await self.flush()
        await self._client.aclose()
