"""Bulk appends for the ledger writer, one per backend, without an ORM in the way.

The writer appends thousands of rows a second while the gateway serves. SQLAlchemy's
executemany spends most of its time building and processing parameter dicts on the event
loop, so appends go straight to the driver: SQLite's stdlib module in a thread of its own,
Postgres's binary COPY through asyncpg. Schema and queries stay with SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from modelplane.errors import LedgerError

Row = tuple[Any, ...]


class Appender(Protocol):
    async def append(self, servings: Sequence[Row], calls: Sequence[Row]) -> None: ...

    async def close(self) -> None: ...


class SqliteAppender:
    """Appends on one dedicated thread with its own connection: SQLite has a single writer anyway."""

    def __init__(self, path: Path, serving_columns: Sequence[str], call_columns: Sequence[str]) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ledger-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._servings_sql = _insert("servings", serving_columns, "?")
        self._calls_sql = _insert("calls", call_columns, "?")

    async def append(self, servings: Sequence[Row], calls: Sequence[Row]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._append, servings, calls)

    def _append(self, servings: Sequence[Row], calls: Sequence[Row]) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
                self._conn.execute(f"PRAGMA {pragma}")
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany(self._servings_sql, servings)
            if calls:
                conn.executemany(self._calls_sql, calls)
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            permanent = isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError)
            raise LedgerError(f"SQLite refused a ledger write: {exc}", permanent=permanent) from exc
        conn.execute("COMMIT")

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


class PostgresAppender:
    """Appends with COPY (binary), the fastest way into Postgres, in one transaction."""

    def __init__(self, dsn: str, serving_columns: Sequence[str], call_columns: Sequence[str]) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._serving_columns = list(serving_columns)
        self._call_columns = list(call_columns)

    async def append(self, servings: Sequence[Row], calls: Sequence[Row]) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("servings", records=servings, columns=self._serving_columns)
                if calls:
                    await conn.copy_records_to_table("calls", records=calls, columns=self._call_columns)
        except asyncpg.PostgresError as exc:
            permanent = isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError)
            raise LedgerError(f"Postgres refused a ledger write: {exc}", permanent=permanent) from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _insert(table: str, columns: Sequence[str], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(mark for _ in columns)})"
