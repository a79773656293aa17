"""Prometheus metrics, on a registry owned by the gateway (no process-global state)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelplane.ledger.records import CallRecord, ServingRecord
from modelplane.serving.breaker import BreakerView, State

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BREAKER_LEVEL = {State.CLOSED: 0.0, State.HALF_OPEN: 0.5, State.OPEN: 1.0}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Servings, tokens, cost and latency by feature, model and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("feature", "model", "status")
        self.servings = Counter("modelplane_servings", "Requests served", labels, registry=self.registry)
        self.tokens = Counter(
            "modelplane_tokens",
            "Tokens by kind (input, cached_input, output)",
            ("feature", "model", "kind"),
            registry=self.registry,
        )
        self.cost = Counter(
            "modelplane_cost_usd", "Cost in USD of priced calls", ("feature", "model"), registry=self.registry
        )
        self.unpriced = Counter(
            "modelplane_unpriced_calls", "Calls whose model has no price", ("model",), registry=self.registry
        )
        self.latency = Histogram(
            "modelplane_serving_latency_seconds",
            "Latency of a request, end to end",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "modelplane_time_to_first_token_seconds",
            "Time to the first token",
            ("feature", "model"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "modelplane_upstream_errors",
            "Failed upstream calls by error class",
            ("model", "error_class"),
            registry=self.registry,
        )

        self._breaker_views: Callable[[], Awaitable[list[BreakerView]]] | None = None
        self._serving_children: dict[tuple[str, str, str], tuple[Counter, Histogram, Histogram]] = {}
        self._call_children: dict[tuple[str, str], tuple[Counter, Counter, Counter, Counter]] = {}

    def watch_ledger(self, depth: Callable[[], int]) -> None:
        gauge = Gauge("modelplane_ledger_queue_depth", "Records waiting for the ledger writer", registry=self.registry)
        gauge.set_function(lambda: float(depth()))

    def watch_breakers(self, views: Callable[[], Awaitable[list[BreakerView]]]) -> None:
        """Breaker states are read when /metrics is scraped (see `refresh`)."""
        self._breaker_views = views
        self.breaker_state = Gauge(
            "modelplane_breaker_open",
            "Circuit breaker per model deployment: 0 closed, 1 open, 0.5 half-open",
            ("deployment",),
            registry=self.registry,
        )
        self.breaker_failures = Gauge(
            "modelplane_breaker_window_failures",
            "Failures in the breaker's window",
            ("deployment",),
            registry=self.registry,
        )

    async def refresh(self) -> None:
        """Update the gauges whose source must be awaited (shared breaker state)."""
        if self._breaker_views is None:
            return
        for view in await self._breaker_views():
            self.breaker_state.labels(view.key).set(_BREAKER_LEVEL[view.state])
            self.breaker_failures.labels(view.key).set(view.failures)

    def observe(self, record: ServingRecord) -> None:
        model = record.model or ""
        key = (record.feature, model, record.status)
        # Label lookups cost more than the increments; keep the children per label set.
        children = self._serving_children.get(key)
        if children is None:
            children = self._serving_children[key] = (
                self.servings.labels(*key),
                self.latency.labels(*key),
                self.ttft.labels(record.feature, model),
            )
        servings, latency, ttft = children
        servings.inc()
        latency.observe(record.latency_ms / 1000.0)
        if record.ttft_ms is not None:
            ttft.observe(record.ttft_ms / 1000.0)
        for call in record.calls:
            self._observe_call(record.feature, call)

    def _observe_call(self, feature: str, call: CallRecord) -> None:
        if call.error_class:
            self.upstream_errors.labels(call.model, call.error_class).inc()
        key = (feature, call.model)
        children = self._call_children.get(key)
        if children is None:
            children = self._call_children[key] = (
                self.tokens.labels(feature, call.model, "input"),
                self.tokens.labels(feature, call.model, "cached_input"),
                self.tokens.labels(feature, call.model, "output"),
                self.cost.labels(feature, call.model),
            )
        input_tokens, cached_tokens, output_tokens, cost = children
        input_tokens.inc(call.input_tokens)
        cached_tokens.inc(call.cached_input_tokens)
        output_tokens.inc(call.output_tokens)
        if call.cost_usd is None:
            self.unpriced.labels(call.model).inc()
        else:
            cost.inc(call.cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)
