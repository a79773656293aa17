"""Escalation: a serving whose output no model could get right goes to a queue for a person.

The client gets the feature's deterministic answer meanwhile; the queue is the ledger's
`escalations` table, read with `GET /admin/escalations` or `modelplane escalations list`.
"""

from __future__ import annotations

import time
from typing import Any

from modelplane.ledger.records import EscalationRecord
from modelplane.ledger.store import LedgerStore
from modelplane.serving.state import Serving, new_id


async def escalate(
    store: LedgerStore, serving: Serving, body: dict[str, Any], reason: str, last_output: str, version: str
) -> None:
    caller = serving.caller
    await store.add_escalation(
        EscalationRecord(
            id=new_id(),
            ts=time.time(),
            serving_id=serving.serving_id,
            request_id=serving.id,
            tenant=caller.tenant if caller else "",
            tier=caller.tier if caller else "",
            feature=serving.feature,
            reason=reason,
            request=body,
            last_output=last_output,
            config_version=version,
        )
    )
    serving.status = "escalated"
