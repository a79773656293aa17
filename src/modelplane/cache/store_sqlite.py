"""The embedded default cache store: one SQLite file under $MODELPLANE_HOME, next to the ledger.

Entries survive a gateway restart: at start every unexpired entry is loaded into memory.
Writes are queued and sent in batches from a worker thread, so the event loop never waits
on the disk. The file is bounded by bytes (oldest entries go first) and expired entries are
deleted as batches are written. Every second the gateway also reads what other processes
wrote (other `--workers`) and the purges `modelplane cache purge` recorded, so a purge from
the command line reaches a running gateway without an admin key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from modelplane.cache.store import Apply, FeatureUsage, Purge, StoredEntry

__all__ = ["SqliteStore", "purge_file", "usage_of_file"]

log = logging.getLogger("modelplane.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, key TEXT NOT NULL, tenant TEXT NOT NULL, feature TEXT NOT NULL,
    body BLOB NOT NULL, cost_usd REAL, model TEXT NOT NULL, expires_at REAL NOT NULL,
    question TEXT, vector BLOB, embedder TEXT, size INTEGER NOT NULL, origin TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_entries_key ON entries (key);
CREATE INDEX IF NOT EXISTS ix_entries_owner ON entries (tenant, feature);
CREATE INDEX IF NOT EXISTS ix_entries_expires ON entries (expires_at);
CREATE TABLE IF NOT EXISTS purges (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT, feature TEXT, ts REAL NOT NULL, origin TEXT NOT NULL
);
"""
_COLUMNS = "kind, key, body, cost_usd, model, expires_at, question, vector, embedder"
_OWNER = "(:tenant IS NULL OR tenant = :tenant) AND (:feature IS NULL OR feature = :feature)"


class SqliteStore:
    """Cache entries in a SQLite file, bounded by `max_bytes`."""

    name = "sqlite"

    def __init__(self, path: Path, max_bytes: int, *, poll_interval: float = 1.0) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.poll_interval = poll_interval
        self._origin = os.urandom(8).hex()  # this process: its own writes are not read back
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one thread at a time on the connection
        self._outbox: list[StoredEntry] = []
        self._writer: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._last_entry = 0
        self._last_purge = 0

    async def start(self, apply: Apply) -> None:
        self._db = await asyncio.to_thread(connect, self.path)
        async with self._lock:
            self._last_purge = await asyncio.to_thread(self._max_purge)
        await self._sync(apply)
        self._follower = asyncio.get_running_loop().create_task(self._follow(apply))

    def put(self, entry: StoredEntry) -> None:
        self._outbox.append(entry)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def get_exact(self, key: str) -> StoredEntry | None:
        return None  # every entry in the file is in memory already (loaded at start, then followed)

    async def purge(self, tenant: str | None, feature: str | None) -> int:
        await self.flush()
        async with self._lock:
            return await asyncio.to_thread(_purge, self._conn, tenant, feature, self._origin)

    async def usage(self) -> list[FeatureUsage]:
        async with self._lock:
            return await asyncio.to_thread(_usage, self._conn)

    async def flush(self) -> None:
        """Wait until every queued entry is in the file."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.flush()
        if self._db is not None:
            async with self._lock:
                await asyncio.to_thread(self._db.close)
            self._db = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the SQLite cache store is not started")
        return self._db

    async def _drain(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                async with self._lock:
                    await asyncio.to_thread(self._write, batch)
            except sqlite3.Error as exc:
                log.warning("cache entries not written to %s: %s", self.path, exc)

    def _write(self, batch: list[StoredEntry]) -> None:
        db = self._conn
        with db:
            for entry in batch:
                if entry.kind == "exact":
                    db.execute("DELETE FROM entries WHERE key = ? AND kind = 'exact'", (entry.key,))
                db.execute(
                    f"INSERT INTO entries ({_COLUMNS}, tenant, feature, size, origin) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_row(entry), entry.tenant, entry.feature, entry.size, self._origin),
                )
            db.execute("DELETE FROM entries WHERE expires_at <= ?", (time.time(),))
            _bound(db, self.max_bytes)

    async def _follow(self, apply: Apply) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self._sync(apply)
            except sqlite3.Error as exc:
                log.warning("cache file %s not readable: %s", self.path, exc)

    async def _sync(self, apply: Apply) -> None:
        """Apply purges recorded since the last look, then entries other processes wrote."""
        async with self._lock:
            purges, entries = await asyncio.to_thread(self._changes)
        for purge in purges:
            apply(purge)
        for entry in entries:
            apply(entry)

    def _changes(self) -> tuple[list[Purge], list[StoredEntry]]:
        db = self._conn
        purges = db.execute(
            "SELECT id, tenant, feature FROM purges WHERE id > ? AND origin != ? ORDER BY id",
            (self._last_purge, self._origin),
        ).fetchall()
        self._last_purge = max([self._last_purge, *(row[0] for row in purges)])
        rows = db.execute(
            f"SELECT id, {_COLUMNS} FROM entries WHERE id > ? AND origin != ? AND expires_at > ? ORDER BY id",
            (self._last_entry, self._origin, time.time()),
        ).fetchall()
        self._last_entry = max([self._last_entry, *(row[0] for row in rows)])
        return [Purge(t, f) for _, t, f in purges], [_entry(row[1:]) for row in rows]

    def _max_purge(self) -> int:
        return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM purges").fetchone()[0])


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) a cache file in WAL mode, so readers in other processes do not block writers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=5.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    db.isolation_level = "DEFERRED"  # `with db:` wraps each batch in one transaction
    return db


def purge_file(path: Path, tenant: str | None, feature: str | None) -> int:
    """Purge a cache file directly (the CLI): running gateways apply it within a second."""
    db = connect(path)
    try:
        return _purge(db, tenant, feature, "cli")
    finally:
        db.close()


def usage_of_file(path: Path) -> list[FeatureUsage]:
    db = connect(path)
    try:
        return _usage(db)
    finally:
        db.close()


def _purge(db: sqlite3.Connection, tenant: str | None, feature: str | None, origin: str) -> int:
    owner = {"tenant": tenant, "feature": feature}
    with db:
        count = db.execute(f"DELETE FROM entries WHERE {_OWNER}", owner).rowcount
        db.execute(
            "INSERT INTO purges (tenant, feature, ts, origin) VALUES (?, ?, ?, ?)",
            (tenant, feature, time.time(), origin),
        )
    return int(count)


def _usage(db: sqlite3.Connection) -> list[FeatureUsage]:
    rows = db.execute(
        "SELECT feature, kind, COUNT(*), SUM(size) FROM entries WHERE expires_at > ? GROUP BY feature, kind "
        "ORDER BY feature",
        (time.time(),),
    ).fetchall()
    usage: dict[str, FeatureUsage] = {}
    for feature, kind, count, size in rows:
        item = usage.setdefault(feature, FeatureUsage(feature))
        item.entries += count
        item.bytes += size
        item.by_kind[kind] = count
    return list(usage.values())


def _bound(db: sqlite3.Connection, max_bytes: int) -> None:
    """Delete the oldest entries until the file's entries fit in `max_bytes`."""
    total = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0])
    if total <= max_bytes:
        return
    excess, last = total - max_bytes, 0
    for entry_id, size in db.execute("SELECT id, size FROM entries ORDER BY id"):
        excess, last = excess - size, entry_id
        if excess <= 0:
            break
    db.execute("DELETE FROM entries WHERE id <= ?", (last,))


def _row(entry: StoredEntry) -> tuple[object, ...]:
    return (
        entry.kind,
        entry.key,
        entry.body,
        entry.cost_usd,
        entry.model,
        entry.expires_at,
        entry.question,
        entry.vector,
        entry.embedder,
    )


def _entry(row: tuple[Any, ...]) -> StoredEntry:
    kind, key, body, cost, model, expires_at, question, vector, embedder = row
    return StoredEntry(kind, key, bytes(body), cost, model, expires_at, question, vector and bytes(vector), embedder)
