"""A serving in flight: who asked, for what, and every call made for it."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

from modelplane.economics.prices import call_cost
from modelplane.errors import ModelplaneError, ProviderError, RequestError, http_status
from modelplane.ledger.records import CallRecord
from modelplane.providers.base import Usage
from modelplane.routing.strategies import Decision
from modelplane.serving.auth import Caller
from modelplane.serving.runtime import Deployment, Model

# Ids need uniqueness, not secrecy: a per-process generator seeded from the OS (reseeded in a
# forked worker) costs a fraction of an `os.urandom` system call per id.
_random = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(16)))


def new_id() -> str:
    """A 24-hex-digit id that sorts by time: nanoseconds, then 32 random bits.

    Ids that grow with time land at the end of the ledger's B-tree indexes; random ones
    land anywhere, and made every insert about twice as expensive.
    """
    return f"{time.time_ns():016x}{_random.getrandbits(32):08x}"


@dataclass(slots=True)
class Inbound:
    """What the HTTP edge hands the pipeline: the raw body and the headers that matter."""

    body: bytes
    authorization: str | None = None
    feature: str | None = None
    serving_id: str | None = None
    purpose: str = "serve"  # "eval" (`X-Modelplane-Purpose: eval`): the economics report leaves it out


@dataclass(slots=True)
class Serving:
    """Mutable state of one request as it passes the stages."""

    operation: str
    id: str = field(default_factory=new_id)
    serving_id: str = ""
    ts: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    caller: Caller | None = None
    feature: str = ""
    stream: bool = False
    model: str | None = None  # the model that answered (or "deterministic")
    calls: list[CallRecord] = field(default_factory=list)
    first_token_at: float | None = None
    finished: float | None = None
    status: str = "ok"
    http_status: int = 200
    error: ModelplaneError | None = None
    cache: str = "miss"
    cache_score: float | None = None
    cache_reason: str | None = None  # why the cache hit or missed (see serving/cache.py)
    saved_usd: float | None = None
    fallback_depth: int = 0
    cascade_escalations: int = 0  # cheaper answers a cascade's checks refused before the served one
    route: Decision | None = None  # what the route stage decided
    purpose: str = "serve"  # or "eval": see Inbound.purpose

    @classmethod
    def begin(cls, operation: str, inbound: Inbound) -> Serving:
        serving = cls(operation)
        serving.serving_id = inbound.serving_id or serving.id
        serving.purpose = inbound.purpose
        return serving

    def fail(self, exc: ModelplaneError, status: str = "error") -> Serving:
        """Record the error that ended the serving. An escalated serving stays `escalated`: the
        queue holds it, and the report counts escalations by status; the error is kept beside it."""
        if self.status != "escalated":
            self.status = status
        self.error, self.http_status = exc, http_status(exc)
        exc.serving_id = self.serving_id
        return self

    def finish(self) -> Serving:
        self.finished = time.perf_counter()
        return self

    @property
    def error_class(self) -> str | None:
        if isinstance(self.error, ProviderError | RequestError):
            return str(self.error.error_class)
        return None if self.error is None else "internal"

    @property
    def answered_by(self) -> CallRecord | None:
        """The last successful call: the one whose answer the client got."""
        return next((c for c in reversed(self.calls) if c.status == "ok" and c.purpose == "answer"), None)


@dataclass(slots=True)
class Attempt:
    """One upstream call being timed; `done` turns it into a CallRecord on the serving."""

    serving: Serving
    model: Model
    deployment: Deployment
    ts: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)

    def done(
        self,
        usage: Usage,
        first_token_at: float | None,
        error: ProviderError | None,
        version: str,
        response_model: str | None = None,
    ) -> CallRecord:
        now = time.perf_counter()
        call = CallRecord(
            id=new_id(),
            request_id=self.serving.id,
            serving_id=self.serving.serving_id,
            ts=self.ts,
            attempt=len(self.serving.calls),
            model=self.model.name,
            provider=self.deployment.provider.name,
            status="ok" if error is None else "error",
            error_class=None if error is None else str(error.error_class),
            response_model=response_model,
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_usd=call_cost(usage, self.model.price_at(self.serving.ts)),
            latency_ms=(now - self.started) * 1000.0,
            ttft_ms=None if first_token_at is None else (first_token_at - self.started) * 1000.0,
            config_version=version,
        )
        self.serving.calls.append(call)
        if first_token_at is not None and self.serving.first_token_at is None:
            self.serving.first_token_at = first_token_at
        return call
