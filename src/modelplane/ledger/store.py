"""The ledger store: SQLite (embedded default) or Postgres (production), one async engine.

The store only appends and answers small lookups. Reports run their own queries; nothing
analytical belongs on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from modelplane.errors import UsageError
from modelplane.filelock import exclusive
from modelplane.ledger.append import Appender, PostgresAppender, SqliteAppender
from modelplane.ledger.migrations import migrate
from modelplane.ledger.records import CallRecord, EscalationRecord, ServingRecord

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_URL_HINT = "use sqlite:///path/to/ledger.db or postgresql://user@host:5432/db"
_SQL_TYPES: dict[str, type[sa.types.TypeEngine[Any]]] = {
    "str": sa.Text,
    "int": sa.BigInteger,
    "float": sa.Double,
    "bool": sa.Boolean,
    "dict[str, Any]": sa.Text,  # JSON text; the store encodes and decodes it
}
_ESCALATION_STATUSES = ("open", "resolved")


def _table(name: str, record_type: type[Any]) -> sa.Table:
    """The table as the record type sees it now, i.e. after every migration.

    Typed columns make each driver bind and return the same Python values
    (SQLite has no boolean, asyncpg will not bind an int to a float8 parameter).
    """
    columns = []
    for field in dataclasses.fields(record_type):
        if field.name == "calls":
            continue
        # Annotations are strings here (`from __future__ import annotations`): "float | None".
        base = str(field.type).removesuffix(" | None")
        columns.append(sa.Column(field.name, _SQL_TYPES[base], primary_key=field.name == "id"))
    return sa.Table(name, sa.MetaData(), *columns)


_SERVINGS = _table("servings", ServingRecord)
_CALLS = _table("calls", CallRecord)
_ESCALATIONS = _table("escalations", EscalationRecord)
_TABLES = {"servings": _SERVINGS, "calls": _CALLS}
_SERVING_NAMES = tuple(_SERVINGS.c.keys())
_CALL_NAMES = tuple(_CALLS.c.keys())
# attrgetter pulls every field in C: the writer turns thousands of records a second into rows.
_serving_values = attrgetter(*_SERVING_NAMES)
_call_values = attrgetter(*_CALL_NAMES)


def redact_url(url: str) -> str:
    """The URL with its password hidden, fit for a log line."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database url>"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite ledger URL; None for Postgres or an in-memory database."""
    parsed = _async_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).expanduser()


def _async_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UsageError(f"bad ledger database url {redact_url(url)!r}", hint=_URL_HINT) from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UsageError(f"unsupported ledger database {parsed.drivername!r}", hint=_URL_HINT)
    return parsed.set(drivername=driver)


def _set_sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets report readers run beside the writer; NORMAL is durable across app crashes
    # in WAL mode; busy_timeout makes a second process wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database or ":memory:"
    if database == ":memory:":
        # One shared connection, or every pooled connection would see its own empty database.
        engine = create_async_engine(url, poolclass=StaticPool)
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
    sa.event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    return engine


class LedgerStore:
    """Appends servings and their calls; answers the small lookups tests and the CLI need."""

    def __init__(self, engine: AsyncEngine, appender: Appender | None = None, migrate_lock: Path | None = None) -> None:
        self.engine = engine
        self._appender = appender  # None: append through SQLAlchemy (an in-memory SQLite database)
        self._migrate_lock = migrate_lock  # a SQLite file's: processes migrate it one at a time

    @classmethod
    def from_url(cls, url: str) -> LedgerStore:
        """A store for `sqlite:///path.db` or `postgresql://user@host:port/db`."""
        async_url = _async_url(url)
        if async_url.get_backend_name() == "sqlite":
            path = sqlite_file(url)
            if path is None:  # in memory
                return cls(_sqlite_engine(async_url))
            appender = SqliteAppender(path, _SERVING_NAMES, _CALL_NAMES)
            return cls(_sqlite_engine(async_url), appender, path.with_name(path.name + ".migrate.lock"))
        dsn = async_url.set(drivername="postgresql").render_as_string(hide_password=False)
        engine = create_async_engine(async_url, pool_pre_ping=True)
        return cls(engine, PostgresAppender(dsn, _SERVING_NAMES, _CALL_NAMES))

    async def open(self) -> None:
        """Bring the schema up to date.

        Several processes may open one new SQLite ledger at once (`serve --workers 2`, two `eval
        run`s): they migrate one at a time under a lock file beside the database (Postgres takes
        an advisory lock in `migrate`)."""
        with contextlib.ExitStack() as held:
            if self._migrate_lock is not None:
                # Wait off the loop. A folder the lock file cannot be made in (a read-only copy of a
                # ledger being reported on) is no reason to fail: a ledger there is not migrating.
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(held.enter_context, exclusive(self._migrate_lock))
            async with self.engine.begin() as conn:
                await migrate(conn)

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._appender is not None:
            await self._appender.close()
        await self.engine.dispose()

    async def write(self, records: Sequence[ServingRecord]) -> None:
        """Insert the servings and all their calls in one transaction."""
        if not records:
            return
        if self._appender is not None:
            rows = [_serving_values(r) for r in records]
            await self._appender.append(rows, [_call_values(c) for r in records for c in r.calls])
            return
        servings = [dict(zip(_SERVING_NAMES, _serving_values(r), strict=True)) for r in records]
        calls = [dict(zip(_CALL_NAMES, _call_values(c), strict=True)) for r in records for c in r.calls]
        async with self.engine.begin() as conn:
            await conn.execute(_SERVINGS.insert(), servings)
            if calls:
                await conn.execute(_CALLS.insert(), calls)

    async def count(self, table: str = "servings") -> int:
        """Rows in `servings` or `calls`."""
        selected = _TABLES.get(table)
        if selected is None:
            raise UsageError(f"unknown ledger table {table!r}", hint=f"use one of {', '.join(_TABLES)}")
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(selected))).scalar_one())

    async def servings(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest servings first."""
        query = sa.select(_SERVINGS).order_by(_SERVINGS.c.ts.desc(), _SERVINGS.c.id.desc()).limit(limit)
        return await self._rows(query)

    async def calls_for(self, request_id: str) -> list[dict[str, Any]]:
        """The calls a request made, in the order it made them."""
        query = sa.select(_CALLS).where(_CALLS.c.request_id == request_id).order_by(_CALLS.c.ts, _CALLS.c.attempt)
        return await self._rows(query)

    async def add_escalation(self, record: EscalationRecord) -> None:
        """Queue a serving for a person. Rare, so written at once rather than through the batched writer."""
        row = dataclasses.asdict(record)
        row["request"] = orjson.dumps(record.request).decode()
        async with self.engine.begin() as conn:
            await conn.execute(_ESCALATIONS.insert().values(**row))

    async def escalations(self, status: str | None = "open", limit: int = 100) -> list[dict[str, Any]]:
        """Escalations newest first; `status` None means every status."""
        query = sa.select(_ESCALATIONS).order_by(_ESCALATIONS.c.ts.desc(), _ESCALATIONS.c.id.desc()).limit(limit)
        if status is not None:
            if status not in _ESCALATION_STATUSES:
                hint = f"use one of {', '.join(_ESCALATION_STATUSES)} or all"
                raise UsageError(f"unknown escalation status {status!r}", hint=hint)
            query = query.where(_ESCALATIONS.c.status == status)
        return [_escalation(row) for row in await self._rows(query)]

    async def escalation(self, escalation_id: str) -> dict[str, Any] | None:
        """One escalation by id, or None."""
        rows = await self._rows(sa.select(_ESCALATIONS).where(_ESCALATIONS.c.id == escalation_id))
        return _escalation(rows[0]) if rows else None

    async def resolve_escalation(self, escalation_id: str, resolution: str) -> bool:
        """Mark an open escalation resolved; False when the id is unknown or already resolved."""
        update = (
            _ESCALATIONS.update()
            .where(_ESCALATIONS.c.id == escalation_id, _ESCALATIONS.c.status == "open")
            .values(status="resolved", resolved_at=time.time(), resolution=resolution)
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(update)
        return result.rowcount == 1

    async def _rows(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
            return [dict(row._mapping) for row in result]


def _escalation(row: dict[str, Any]) -> dict[str, Any]:
    # str(): SQLAlchemy's keys are a str subclass, which orjson refuses to encode.
    return {str(key): value for key, value in row.items()} | {"request": orjson.loads(row["request"])}
