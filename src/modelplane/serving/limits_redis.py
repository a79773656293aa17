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

import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from modelplane.serving.limits import Charge, Check
from modelplane.serving.redis_state import SharedState

log = logging.getLogger("modelplane.limits")


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
        self._prefix = f"{prefix}:limits:"
        self._admit = client.register_script(_ADMIT)
        self._charge = client.register_script(_CHARGE)
        self._shared: SharedState[Sequence[Charge]] = SharedState(
            client,
            "rate limits and budgets, admitting every request",
            self._write_charges,
            log,
            retry_after=retry_after,
        )

    @classmethod
    def from_url(cls, url: str, prefix: str = "modelplane", *, timeout: float = 0.5) -> RedisCounters:
        """Counters in the Redis at `url`, with short socket timeouts: a slow Redis must not slow requests."""
        client = redis.asyncio.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix)

    async def admit(self, checks: Sequence[Check]) -> int | None:
        if self._shared.down:
            return None
        keys = [self._prefix + check.counter for check in checks]
        args: list[str | int] = []
        for check in checks:
            args += [check.limit.field, check.limit.value, check.ttl, int(check.reserve)]
        try:
            refused = int(await self._admit(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            self._shared.unreachable(exc)
            return None
        return None if refused == 0 else refused - 1

    def charge(self, charges: Sequence[Charge]) -> None:
        if charges:
            self._shared.send(charges)

    async def _write_charges(self, charges: Sequence[Charge], pipe: Any) -> None:
        keys = [self._prefix + charge.counter for charge in charges]
        args: list[str | int] = []
        for charge in charges:
            args += [charge.field, charge.amount, charge.ttl]
        await self._charge(keys, args, pipe)

    async def flush(self) -> None:
        await self._shared.flush()

    async def aclose(self) -> None:
        """Send the charges still pending, then close the client."""
        await self._shared.aclose()
