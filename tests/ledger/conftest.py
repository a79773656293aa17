"""Ledger fixtures: records to write and a store on each supported database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelplane.ledger import CallRecord, ServingRecord

MakeServing = Callable[..., ServingRecord]


def _serving(n: int, *, calls: int = 1, cost: float | None = 0.25, ts: float | None = None) -> ServingRecord:
    request_id = f"req-{n}"
    at = 1_700_000_000.0 + n if ts is None else ts
    return ServingRecord(
        id=request_id,
        serving_id=f"srv-{n // 2}",
        ts=at,
        tenant="acme",
        tier="pro",
        feature="support-reply",
        operation="chat",
        status="ok",
        http_status=200,
        model="gpt-4o-mini",
        provider="openai",
        stream=n % 2 == 1,
        fallback_depth=calls - 1,
        input_tokens=100 + n,
        cached_input_tokens=10,
        output_tokens=20,
        cost_usd=cost,
        latency_ms=12.5,
        config_version="cfg-1",
        calls=[
            CallRecord(
                id=f"{request_id}-call-{attempt}",
                request_id=request_id,
                serving_id=f"srv-{n // 2}",
                ts=at + attempt / 10,
                attempt=attempt,
                model="gpt-4o-mini",
                provider="openai",
                status="ok" if attempt == calls - 1 else "error",
                error_class=None if attempt == calls - 1 else "rate_limit",
                input_tokens=100 + n,
                cost_usd=cost,
                latency_ms=5.0,
                ttft_ms=None if attempt else 3.5,
            )
            for attempt in range(calls)
        ],
    )


@pytest.fixture
def make_serving() -> MakeServing:
    """Build a `ServingRecord` numbered `n` with `calls` attempts."""
    return _serving
