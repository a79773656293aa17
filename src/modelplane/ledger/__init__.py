"""The ledger: an append-only record of servings and calls, in SQLite or Postgres."""

from modelplane.ledger.records import CallRecord, EscalationRecord, ServingRecord
from modelplane.ledger.store import LedgerStore, redact_url
from modelplane.ledger.writer import LedgerWriter

__all__ = ["CallRecord", "EscalationRecord", "LedgerStore", "LedgerWriter", "ServingRecord", "redact_url"]
