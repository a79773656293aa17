"""Escalation records for tests, and a ledger seeded with them (never shipped in the package)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelplane.ledger import EscalationRecord, LedgerStore

REASON = "$.priority: 'urgent' is not one of ['low', 'high']"


def escalation(n: int, **fields: Any) -> EscalationRecord:
    """Escalation number `n`, one second after n-1; `fields` override any column."""
    record = EscalationRecord(
        id=f"esc-{n}",
        ts=1_700_000_000.0 + n,
        serving_id=f"srv-{n}",
        request_id=f"req-{n}",
        tenant="acme",
        tier="pro",
        feature="tickets",
        reason=REASON,
        request={"model": "tickets", "messages": [{"role": "user", "content": f"ticket {n} ✓"}]},
        last_output='{"priority": "urgent"}',
        config_version="cfg-1",
    )
    return replace(record, **fields)


async def seed(url: str, records: list[EscalationRecord]) -> None:
    """Open (and migrate) the ledger at `url` and add `records`, as a gateway would have."""
    store = LedgerStore.from_url(url)
    await store.open()
    try:
        for record in records:
            await store.add_escalation(record)
    finally:
        await store.close()
