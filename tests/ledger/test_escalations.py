"""The escalation queue on SQLite and Postgres: add, list by status, resolve once."""

from __future__ import annotations

import time

import orjson
import pytest
import sqlalchemy as sa

from escalations import REASON, escalation
from modelplane.errors import UsageError
from modelplane.ledger import LedgerStore


async def test_round_trip_newest_first(store: LedgerStore) -> None:
    for n in range(3):
        await store.add_escalation(escalation(n, last_output=None if n == 1 else '{"priority": "urgent"}'))

    rows = await store.escalations()
    assert [row["id"] for row in rows] == ["esc-2", "esc-1", "esc-0"]
    assert rows[2] == {
        "id": "esc-0",
        "ts": 1_700_000_000.0,
        "serving_id": "srv-0",
        "request_id": "req-0",
        "tenant": "acme",
        "tier": "pro",
        "feature": "tickets",
        "reason": REASON,
        "request": {"model": "tickets", "messages": [{"role": "user", "content": "ticket 0 ✓"}]},
        "last_output": '{"priority": "urgent"}',
        "status": "open",
        "resolved_at": None,
        "resolution": None,
        "config_version": "cfg-1",
    }
    assert rows[1]["last_output"] is None
    assert orjson.loads(orjson.dumps(rows)) == rows  # plain str keys: fit for a JSON answer
    assert [row["id"] for row in await store.escalations(limit=1)] == ["esc-2"]


async def test_resolve_once_then_filter_by_status(store: LedgerStore) -> None:
    await store.add_escalation(escalation(1))
    await store.add_escalation(escalation(2))
    before = time.time()

    assert await store.resolve_escalation("esc-1", "replied by hand") is True
    assert await store.resolve_escalation("esc-1", "again") is False  # already resolved
    assert await store.resolve_escalation("esc-404", "nothing") is False

    assert [row["id"] for row in await store.escalations("open")] == ["esc-2"]
    resolved = await store.escalations("resolved")
    assert [row["id"] for row in resolved] == ["esc-1"]
    assert resolved[0]["resolution"] == "replied by hand" and resolved[0]["resolved_at"] >= before
    assert [row["id"] for row in await store.escalations(None)] == ["esc-2", "esc-1"]
    one = await store.escalation("esc-1")
    assert one is not None and one["status"] == "resolved"
    assert await store.escalation("esc-404") is None


async def test_unknown_status_is_a_usage_error(store: LedgerStore) -> None:
    with pytest.raises(UsageError, match="unknown escalation status 'closed'"):
        await store.escalations("closed")


async def test_the_migration_indexes_status_and_time(store: LedgerStore) -> None:
    async with store.engine.connect() as conn:
        indexes = await conn.run_sync(lambda sync: sa.inspect(sync).get_indexes("escalations"))
    columns = {ix["name"]: ix["column_names"] for ix in indexes}
    assert columns["ix_escalations_status_ts"] == ["status", "ts"]
