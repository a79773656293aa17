"""What the ledger holds: one `ServingRecord` per gateway request, one `CallRecord` per upstream call,
and an `EscalationRecord` for each serving whose output a person has to look at.

A serving is one user-facing request to a feature. Requests that carry the same
`X-Modelplane-Serving` id form one serving, so `serving_id` may repeat across serving
records; `id` never does. Every call points at the request that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CallRecord:
    """One upstream call (an attempt) made on behalf of a request."""

    id: str
    request_id: str
    serving_id: str
    ts: float  # unix seconds when the call started
    attempt: int
    model: str
    provider: str
    status: str  # "ok" or "error"
    error_class: str | None = None
    response_model: str | None = None  # the model name the upstream reported
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    config_version: str = ""
    purpose: str = "answer"  # "answer", or work done to route it: "judge" (cascade), "shadow", "shadow_judge"


@dataclass(slots=True)
class ServingRecord:
    """One request through the pipeline, with the totals of its calls."""

    id: str
    serving_id: str
    ts: float  # unix seconds when the request arrived
    tenant: str
    tier: str
    feature: str
    operation: str  # "chat" or "embeddings"
    status: str  # "ok", "error", "stream_cut"
    http_status: int
    error_class: str | None = None
    model: str | None = None  # the model that answered
    provider: str | None = None
    stream: bool = False
    cache: str = "miss"
    fallback_depth: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    config_version: str = ""
    saved_usd: float | None = None  # a cache hit: what the original serving cost
    cache_score: float | None = None  # a semantic lookup: what its bar was checked against (learned P, or cosine)
    # why the cache answered or not: exact, semantic, miss, no_entries, below_threshold, guard:<why>,
    # not_cacheable; None when the feature has no cache (see serving/cache.py)
    cache_reason: str | None = None
    # The routing decision (routing/strategies.py): strategy, first choice, the models it chose
    # among (comma-joined), a learned router's score and threshold, and why (cascade escalations too).
    route_strategy: str | None = None
    route_model: str | None = None
    route_candidates: str | None = None
    route_score: float | None = None
    route_threshold: float | None = None
    route_reason: str | None = None
    purpose: str = "serve"  # "eval" for servings an eval run made (the report leaves them out)
    # A cascade: how many cheaper models' answers failed its checks before the served one. The steps
    # down the chain past these (fallback_depth - cascade_escalations) are fallbacks: models that failed.
    cascade_escalations: int = 0
    calls: list[CallRecord] = field(default_factory=list)


@dataclass(slots=True)
class EscalationRecord:
    """A serving whose output failed validation on every model: the client got the deterministic answer."""

    id: str
    ts: float  # unix seconds when it was escalated
    serving_id: str
    request_id: str
    tenant: str
    tier: str
    feature: str
    reason: str  # the last validation error
    request: dict[str, Any]  # the chat request body as the client sent it
    last_output: str | None = None  # the last answer a model gave, if any
    status: str = "open"  # "open" or "resolved"
    resolved_at: float | None = None
    resolution: str | None = None
    config_version: str = ""
