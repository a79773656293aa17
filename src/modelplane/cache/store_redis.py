"""The shared cache store: entries in Redis, so every gateway worker serves what any of them cached.

Exact entries are Redis keys with the entry's TTL, read on a local miss (another worker may
have stored the answer a moment ago). Every stored entry, exact or semantic with its
vector, and every purge is also appended to one Redis stream; each worker reads the stream
from the start when it boots (catch-up) and then follows it, applying other workers'
changes to its in-process maps and vector index, so semantic lookups stay in memory.
The stream is trimmed to about `max_entries`.

Fail open: when Redis is unreachable a lookup is a miss, a store is dropped, a warning is
logged once a minute (see `serving/redis_state.py`), and requests are never failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from modelplane.cache.store import SEP, Apply, Change, FeatureUsage, Purge, StoredEntry
from modelplane.errors import UsageError
from modelplane.serving.redis_state import SharedState

__all__ = ["RedisStore"]

log = logging.getLogger("modelplane.cache")

_BLOCK_MS = 1000  # how long one stream read waits for news
_PAGE = 500


class RedisStore:
    """Cache entries shared through Redis, mirrored into each worker's memory."""

    name = "redis"

    def __init__(
        self, client: redis.asyncio.Redis, follower: redis.asyncio.Redis, prefix: str, max_entries: int
    ) -> None:
        self._shared: SharedState[Change] = SharedState(client, "the response cache, answering miss", self._write, log)
        self._client = client
        self._follower_client = follower  # blocking stream reads need a longer socket timeout than lookups
        self._stream = f"{prefix}:cache:log"
        self._exact = f"{prefix}:cache:x:"
        self.max_entries = max_entries
        self._origin = os.urandom(8).hex().encode()  # this process: its own writes are not applied twice
        self._follower: asyncio.Task[None] | None = None
        self._last = b"0-0"

    @classmethod
    def from_url(cls, url: str, prefix: str, max_entries: int, *, timeout: float = 0.5) -> RedisStore:
        """Short socket timeouts for lookups and stores: a slow Redis must not slow requests."""
        client = redis.asyncio.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        follower = redis.asyncio.Redis.from_url(
            url, socket_timeout=_BLOCK_MS / 1000 + 2 * timeout, socket_connect_timeout=timeout
        )
        return cls(client, follower, prefix, max_entries)

    async def start(self, apply: Apply) -> None:
        await self._read(apply, block=None)  # catch up on everything still in the stream
        self._follower = asyncio.get_running_loop().create_task(self._follow(apply))

    def put(self, entry: StoredEntry) -> None:
        self._shared.send(entry)

    async def get_exact(self, key: str) -> StoredEntry | None:
        if self._shared.down:
            return None
        try:
            value: Any = await self._client.get(self._exact + key)
        except (RedisError, OSError) as exc:
            self._shared.unreachable(exc)
            return None
        if value is None:
            return None
        meta, _, body = value.partition(b"\n")
        return StoredEntry.from_meta(meta, body)

    async def purge(self, tenant: str | None, feature: str | None) -> int:
        """Delete matching exact keys and tell every worker (through the stream) to drop its entries."""
        await self._shared.flush()
        try:
            await self._client.xadd(self._stream, _purge_fields(self._origin, Purge(tenant, feature)))
            doomed = [key async for key in self._client.scan_iter(match=self._pattern(tenant, feature), count=1000)]
            if doomed:
                await self._client.delete(*doomed)
        except (RedisError, OSError) as exc:
            raise UsageError(f"Redis unreachable, cache not purged: {exc}", "check `redis.url` and retry") from exc
        return len(doomed)

    async def usage(self) -> list[FeatureUsage]:
        """Exact entries per feature, counted from their Redis keys."""
        usage: dict[str, FeatureUsage] = {}
        try:
            async for key in self._client.scan_iter(match=self._exact + "*", count=1000):
                feature = bytes(key)[len(self._exact) :].decode(errors="replace").split(SEP)[1]
                item = usage.setdefault(feature, FeatureUsage(feature))
                item.entries += 1
                item.by_kind["exact"] = item.entries
                item.bytes += int(await self._client.strlen(key))
        except (RedisError, OSError) as exc:
            raise UsageError(f"Redis unreachable: {exc}", "check `redis.url` and retry") from exc
        return sorted(usage.values(), key=lambda u: u.feature)

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self._shared.aclose()
        await self._follower_client.aclose()

    async def _write(self, change: Change, pipe: Any) -> None:
        if isinstance(change, Purge):
            return
        ttl_ms = int((change.expires_at - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        if change.kind == "exact":
            pipe.set(self._exact + change.key, change.meta() + b"\n" + change.body, px=ttl_ms)
        fields = {b"o": self._origin, b"m": change.meta(), b"b": change.body, b"v": change.vector or b""}
        pipe.xadd(self._stream, fields, maxlen=self.max_entries, approximate=True)

    async def _follow(self, apply: Apply) -> None:
        while True:
            if self._shared.down:
                await asyncio.sleep(self._shared.retry_after)
                continue
            await self._read(apply, block=_BLOCK_MS)

    async def _read(self, apply: Apply, block: int | None) -> None:
        """Apply the stream's news since the last read (all of it when `block` is None)."""
        try:
            while True:
                found: Any = await self._follower_client.xread({self._stream: self._last}, count=_PAGE, block=block)
                messages = found[0][1] if found else []
                for message_id, fields in messages:
                    self._last = message_id
                    if fields.get(b"o") != self._origin:
                        apply(_change(fields))
                if block is not None or len(messages) < _PAGE:
                    return
        except (RedisError, OSError) as exc:
            self._shared.unreachable(exc)

    def _pattern(self, tenant: str | None, feature: str | None) -> str:
        return f"{self._exact}{_glob(tenant)}{SEP}{_glob(feature)}{SEP}*"


def _change(fields: dict[bytes, bytes]) -> Change:
    if b"p" in fields:
        tenant, _, feature = fields[b"p"].decode().partition(SEP)
        return Purge(tenant or None, feature or None)
    return StoredEntry.from_meta(fields[b"m"], fields[b"b"], fields.get(b"v"))


def _purge_fields(origin: bytes, purge: Purge) -> dict[Any, Any]:
    return {b"o": origin, b"p": f"{purge.tenant or ''}{SEP}{purge.feature or ''}".encode()}


def _glob(name: str | None) -> str:
    """`name` as a literal in a Redis MATCH pattern, or `*` for any."""
    if name is None:
        return "*"
    return "".join("\\" + c if c in "*?[]\\" else c for c in name)
