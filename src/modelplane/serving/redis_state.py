"""What gateway state shared through Redis needs around its scripts (breakers, limit counters).

Fail open: when Redis is unreachable, callers go on without it (a breaker lets calls through,
a limit admits), a warning is logged once a minute, and Redis is left alone for
`retry_after` seconds so requests do not each wait for a connect timeout. Writes that need
no answer (a breaker outcome, a budget charge) are queued and sent behind the request path
by one task, in pipelined batches: one connection and one round trip per batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import redis.asyncio
from redis.exceptions import RedisError

T = TypeVar("T")
Write = Callable[[T, Any], Awaitable[Any]]  # queue one item's script call on a pipeline

_WARN_EVERY = 60.0
_BATCH = 256  # items per pipelined round trip


class SharedState(Generic[T]):
    """A Redis client, its fail-open bookkeeping, and the outbox of writes sent in the background."""

    def __init__(
        self, client: redis.asyncio.Redis, what: str, write: Write[T], log: logging.Logger, *, retry_after: float = 1.0
    ) -> None:
        self.client = client
        self._log = log
        self.retry_after = retry_after
        self._what = what  # e.g. "circuit breakers, letting every call through"
        self._write = write
        self._outbox: list[T] = []
        self._sender: asyncio.Task[None] | None = None
        self._down_until = -math.inf  # time.monotonic(): leave Redis alone until then
        self._warned_at = -math.inf

    @property
    def down(self) -> bool:
        """Redis failed lately: do not ask it until `retry_after` has passed."""
        return time.monotonic() < self._down_until

    def unreachable(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self.retry_after
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            self._log.warning("Redis unreachable for %s: %s", self._what, exc)

    def send(self, item: T) -> None:
        """Queue a write; it reaches Redis soon after, never on the caller's time. Dropped while Redis is down."""
        if self.down:
            return
        self._outbox.append(item)
        if self._sender is None or self._sender.done():
            try:
                self._sender = asyncio.get_running_loop().create_task(self._drain())
            except RuntimeError:
                self._outbox.clear()
                self._log.error("a write for %s was dropped: it needs a running event loop", self._what)

    async def _drain(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox[:_BATCH], self._outbox[_BATCH:]
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for item in batch:
                        await self._write(item, pipe)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self._outbox.clear()  # the rest would only wait for the same timeout
                self.unreachable(exc)
            except Exception:
                self._log.exception("writes for %s failed in Redis", self._what)

    async def flush(self) -> None:
        """Wait until every write queued so far has reached Redis (or failed to)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def aclose(self) -> None:
        """Send what is still queued, then close the client."""
        await self.flush()
        await self.client.aclose()
