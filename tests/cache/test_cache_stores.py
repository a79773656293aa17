"""The stores behind the response cache: a SQLite file that survives restarts, and Redis shared by workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelplane.cache.store import Change, Purge, StoredEntry
from modelplane.cache.store_redis import RedisStore
from modelplane.cache.store_sqlite import SqliteStore, purge_file, usage_of_file
from services import REDIS_URL

SEP = "\x1f"


def entry(tenant: str = "acme", feature: str = "faq", digest: str = "d1", *, ttl: float = 60.0) -> StoredEntry:
    body = b'{"choices":[{"message":{"content":"' + digest.encode() + b'"}}]}'
    return StoredEntry("exact", SEP.join((tenant, feature, digest)), body, 0.01, "small", time.time() + ttl)


def semantic_entry(question: str, vector: bytes) -> StoredEntry:
    return StoredEntry(
        "semantic", f"acme{SEP}faq{SEP}p", b"{}", None, "small", time.time() + 60, question, vector, "wordllama"
    )


class Seen:
    """An `apply` that records every change a store hands it."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._arrived = asyncio.Event()

    def __call__(self, change: Change) -> None:
        self.changes.append(change)
        self._arrived.set()

    async def wait_for(self, count: int) -> list[Change]:
        """The changes so far, once there are `count` of them (a few seconds at most)."""
        async with asyncio.timeout(5.0):
            while len(self.changes) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.changes


async def test_sqlite_entries_survive_a_restart_and_expired_ones_do_not(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "cache.db", 10**6)
    await first.start(Seen())
    vector = bytes(range(16))
    for item in (entry(digest="live"), entry(digest="stale", ttl=-1), semantic_entry("how do I reset it", vector)):
        first.put(item)
    await first.aclose()

    seen = Seen()
    second = SqliteStore(tmp_path / "cache.db", 10**6)
    await second.start(seen)
    await second.aclose()
    loaded = {c.key.rsplit(SEP, 1)[1]: c for c in seen.changes if isinstance(c, StoredEntry)}
    assert set(loaded) == {"live", "p"}
    assert loaded["p"].vector == vector and loaded["p"].question == "how do I reset it"
    assert loaded["live"].body == entry(digest="live").body


async def test_sqlite_file_is_bounded_oldest_first(tmp_path: Path) -> None:
    one = entry(digest="0000").size
    store = SqliteStore(tmp_path / "cache.db", max_bytes=one * 5)
    await store.start(Seen())
    for i in range(20):
        store.put(entry(digest=f"{i:04d}"))
        await store.flush()
    usage = await store.usage()
    await store.aclose()
    assert usage[0].entries == 5 and usage[0].bytes <= one * 5
    seen = Seen()
    reopened = SqliteStore(tmp_path / "cache.db", max_bytes=one * 5)
    await reopened.start(seen)
    await reopened.aclose()
    assert sorted(c.key[-4:] for c in seen.changes if isinstance(c, StoredEntry)) == [
        "0015",
        "0016",
        "0017",
        "0018",
        "0019",
    ]


async def test_another_process_sees_new_entries_and_command_line_purges(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    writer, follower, seen = SqliteStore(path, 10**6), SqliteStore(path, 10**6, poll_interval=0.02), Seen()
    await writer.start(Seen())
    await follower.start(seen)
    try:
        writer.put(entry(tenant="acme"))
        writer.put(entry(tenant="globex"))
        changes = await seen.wait_for(2)
        assert {c.tenant for c in changes if isinstance(c, StoredEntry)} == {"acme", "globex"}
        assert purge_file(path, "acme", None) == 1  # what `modelplane cache purge --tenant acme` does
        changes = await seen.wait_for(3)
        assert changes[2] == Purge("acme", None)
        assert [(u.feature, u.entries) for u in usage_of_file(path)] == [("faq", 1)]
    finally:
        await writer.aclose()
        await follower.aclose()


@pytest.fixture
async def redis_stores(redis_prefix: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    a = RedisStore.from_url(REDIS_URL, redis_prefix, max_entries=1000)
    b = RedisStore.from_url(REDIS_URL, redis_prefix, max_entries=1000)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_redis_shares_entries_and_purges_between_workers(redis_stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = redis_stores
    seen_a, seen_b = Seen(), Seen()
    await a.start(seen_a)
    await b.start(seen_b)
    vector = bytes(range(32))
    a.put(entry(digest="x"))
    a.put(semantic_entry("how do I reset it", vector))
    changes = await seen_b.wait_for(2)
    assert [c.kind for c in changes if isinstance(c, StoredEntry)] == ["exact", "semantic"]
    assert isinstance(changes[1], StoredEntry) and changes[1].vector == vector
    found = await b.get_exact(entry(digest="x").key)
    assert found is not None and found.body == entry(digest="x").body and found.cost_usd == 0.01
    assert seen_a.changes == []  # a worker does not apply its own writes twice

    assert await b.purge("acme", "faq") == 1
    assert await a.get_exact(entry(digest="x").key) is None
    assert (await seen_a.wait_for(1))[0] == Purge("acme", "faq")


async def test_a_late_worker_catches_up_from_the_stream(redis_stores: tuple[RedisStore, RedisStore]) -> None:
    a, b = redis_stores
    await a.start(Seen())
    a.put(entry(digest="early"))
    a.put(entry(tenant="globex", digest="gone"))
    await a._shared.flush()
    await a.purge("globex", None)
    seen = Seen()
    await b.start(seen)  # everything so far, in order: two entries, then the purge
    assert [type(c).__name__ for c in seen.changes] == ["StoredEntry", "StoredEntry", "Purge"]


async def test_an_unreachable_redis_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", "down", max_entries=1000, timeout=0.2)
    caplog.set_level(logging.WARNING, logger="modelplane.cache")
    await store.start(Seen())
    assert await store.get_exact(entry().key) is None
    store.put(entry())
    assert await store.get_exact(entry().key) is None
    await store.aclose()
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1
