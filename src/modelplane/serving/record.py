"""Stage 11, record: a ledger record, metrics and spans for every serving, off the hot path.

The ledger writer batches in the background; recording only enqueues. When the queue is
full the request waits for room (backpressure keeps memory bounded when the database falls
behind). A serving cut short by cancellation cannot wait, so its record waits in a task
that `close` awaits: a clean shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from modelplane.ledger.records import ServingRecord
from modelplane.ledger.writer import LedgerWriter
from modelplane.serving.state import Serving
from modelplane.telemetry.metrics import Metrics
from modelplane.telemetry.tracing import Tracing

log = logging.getLogger("modelplane.record")


ChargeHook = Callable[[Serving, ServingRecord], None]


class Recorder:
    """Every serving ends here; `charge` (rate limits and budgets, see `limits.py`) sees its record."""

    def __init__(
        self, writer: LedgerWriter, metrics: Metrics | None, tracing: Tracing, charge: ChargeHook | None = None
    ) -> None:
        self.writer = writer
        self.metrics = metrics
        self.tracing = tracing
        self.charge = charge
        self._waiting: set[asyncio.Task[None]] = set()
        self._unpriced_warned: set[str] = set()

    async def record(self, serving: Serving, version: str) -> ServingRecord:
        record = self._observe(serving, version)
        if not self.writer.submit(record):
            await self.writer.put(record)
        return record

    def record_nowait(self, serving: Serving, version: str) -> ServingRecord:
        """For a serving ended by cancellation, where awaiting is not possible."""
        record = self._observe(serving, version)
        if not self.writer.submit(record):
            task = asyncio.ensure_future(self.writer.put(record))
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)
        return record

    def _observe(self, serving: Serving, version: str) -> ServingRecord:
        record = to_record(serving.finish(), version)
        self._warn_unpriced(record)
        if self.charge is not None:
            self.charge(serving, record)
        if self.metrics is not None:
            self.metrics.observe(record)
        self.tracing.emit(record)
        return record

    def _warn_unpriced(self, record: ServingRecord) -> None:
        for call in record.calls:
            if call.cost_usd is None and call.model not in self._unpriced_warned:
                self._unpriced_warned.add(call.model)
                log.warning("model '%s' has no price: its calls are recorded with cost null", call.model)

    async def close(self) -> None:
        if self._waiting:
            await asyncio.gather(*self._waiting)
        await self.writer.close()
        self.tracing.shutdown()


def to_record(serving: Serving, version: str) -> ServingRecord:
    """Sum a serving's calls into its ledger record."""
    calls = serving.calls
    answered = serving.answered_by
    costs = [call.cost_usd for call in calls]
    finished = serving.finished or serving.started
    caller = serving.caller
    route = serving.route
    return ServingRecord(
        id=serving.id,
        serving_id=serving.serving_id,
        ts=serving.ts,
        tenant=caller.tenant if caller else "",
        tier=caller.tier if caller else "",
        feature=serving.feature,
        operation=serving.operation,
        status=serving.status,
        http_status=serving.http_status,
        error_class=serving.error_class,
        model=serving.model or (calls[-1].model if calls else None),
        provider=answered.provider if answered else None,
        stream=serving.stream,
        cache=serving.cache,
        fallback_depth=serving.fallback_depth,
        cascade_escalations=serving.cascade_escalations,
        input_tokens=sum(c.input_tokens for c in calls),
        cached_input_tokens=sum(c.cached_input_tokens for c in calls),
        cache_write_tokens=sum(c.cache_write_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        reasoning_tokens=sum(c.reasoning_tokens for c in calls),
        cost_usd=None if None in costs else sum(c for c in costs if c is not None),
        latency_ms=(finished - serving.started) * 1000.0,
        ttft_ms=None if serving.first_token_at is None else (serving.first_token_at - serving.started) * 1000.0,
        config_version=version,
        saved_usd=serving.saved_usd,
        cache_score=serving.cache_score,
        cache_reason=serving.cache_reason,
        route_strategy=None if route is None else route.strategy,
        route_model=None if route is None else route.model,
        route_candidates=None if route is None else route.candidates_text,
        route_score=None if route is None else route.score,
        route_threshold=None if route is None else route.threshold,
        route_reason=None if route is None else route.reason or None,
        purpose=serving.purpose,
        calls=calls,
    )
