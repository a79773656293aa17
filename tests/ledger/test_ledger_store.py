"""LedgerStore on SQLite and Postgres: round trips, NULL costs, migrations, URLs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelplane.errors import LedgerError, UsageError
from modelplane.ledger import LedgerStore, ServingRecord, redact_url
from modelplane.ledger.migrations import MIGRATIONS

MakeServing = Callable[..., ServingRecord]


async def test_round_trip_keeps_every_field(store: LedgerStore, make_serving: MakeServing) -> None:
    records = [make_serving(n, calls=2) for n in range(3)]
    await store.write(records)

    assert await store.count() == 3
    assert await store.count("calls") == 6
    newest = await store.servings(limit=2)
    assert [row["id"] for row in newest] == ["req-2", "req-1"]
    expected = asdict(records[1])
    expected_calls = expected.pop("calls")
    assert newest[1] == expected
    assert newest[1]["stream"] is True  # a real bool back, even from SQLite
    assert await store.calls_for("req-1") == expected_calls


async def test_cost_none_stays_null(store: LedgerStore, make_serving: MakeServing) -> None:
    await store.write([make_serving(7, cost=None), make_serving(8, cost=0.0)])

    by_id = {row["id"]: row for row in await store.servings()}
    assert by_id["req-7"]["cost_usd"] is None
    assert by_id["req-8"]["cost_usd"] == 0.0
    assert (await store.calls_for("req-7"))[0]["cost_usd"] is None
    async with store.engine.connect() as conn:
        nulls = await conn.scalar(sa.text("SELECT count(*) FROM servings WHERE cost_usd IS NULL"))
    assert nulls == 1


async def test_write_is_one_transaction(store: LedgerStore, make_serving: MakeServing) -> None:
    await store.write([make_serving(1)])
    # A duplicate id in the second batch must roll back the new serving and its calls too.
    with pytest.raises(LedgerError, match="refused a ledger write"):
        await store.write([make_serving(2), make_serving(1)])

    assert await store.count() == 1
    assert await store.calls_for("req-2") == []


async def test_migrations_are_idempotent_and_recorded(ledger_url: str) -> None:
    for _ in range(2):
        store = LedgerStore.from_url(ledger_url)
        await store.open()
        await store.close()

    try:
        async with store.engine.connect() as conn:
            names = (await conn.execute(sa.text("SELECT name FROM _migrations ORDER BY name"))).scalars().all()
            indexes = await conn.run_sync(lambda sync: sa.inspect(sync).get_indexes("servings"))
    finally:
        await store.close()
    assert names == [m.__name__ for m in MIGRATIONS]
    assert names[0] == "m001_servings_and_calls"
    assert {ix["name"] for ix in indexes} >= {"ix_servings_ts", "ix_servings_feature_ts"}


async def test_empty_write_and_count_unknown_table(store: LedgerStore) -> None:
    await store.write([])
    assert await store.count() == 0
    with pytest.raises(UsageError, match="unknown ledger table"):
        await store.count("users; DROP TABLE servings")


async def test_sqlite_creates_parent_dirs_and_uses_wal(tmp_path: Path) -> None:
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/a/b/ledger.db")
    await store.open()
    async with store.engine.connect() as conn:
        mode = await conn.scalar(sa.text("PRAGMA journal_mode"))
        sync = await conn.scalar(sa.text("PRAGMA synchronous"))
    await store.close()
    assert (tmp_path / "a" / "b" / "ledger.db").is_file()
    assert mode == "wal"
    assert sync == 1  # NORMAL


def test_from_url_picks_async_drivers() -> None:
    pg = LedgerStore.from_url("postgresql://user:secret@db.internal:5432/ledger")
    assert pg.engine.url.drivername == "postgresql+asyncpg"
    with pytest.raises(UsageError, match="unsupported ledger database 'mysql'"):
        LedgerStore.from_url("mysql://user@host/db")


def test_redact_url_hides_the_password() -> None:
    redacted = redact_url("postgresql://user:s3cret@db.internal:5432/ledger")
    assert "s3cret" not in redacted
    assert redacted == "postgresql://user:***@db.internal:5432/ledger"
    assert redact_url("not a url at all") == "<unparseable database url>"


_OPEN_AT = """
import asyncio, sys, time
from modelplane.ledger import LedgerStore

async def main() -> None:
    store = LedgerStore.from_url(sys.argv[1])
    while time.time() < float(sys.argv[2]):  # every process opens at the same moment
        time.sleep(0.001)
    await store.open()
    await store.close()

asyncio.run(main())
"""


def test_processes_opening_a_new_sqlite_ledger_at_once_all_migrate_it(tmp_path: Path) -> None:
    # `serve --workers 2` or two `eval run`s on a fresh home: without the lock one of them died
    # with "table _migrations already exists".
    for attempt in range(3):
        url = f"sqlite:///{tmp_path}/ledger-{attempt}.db"
        start = time.time() + 1.5
        procs = [
            subprocess.Popen([sys.executable, "-c", _OPEN_AT, url, str(start)], stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        failures = [err for p in procs if (err := p.communicate(timeout=60)[1]) and p.returncode != 0]
        assert failures == []
