"""OpenTelemetry spans with the GenAI semantic conventions, built from ledger records.

Spans are made after the serving, from its record, with the real start and end times, so
tracing adds nothing to the latency a client sees. Off by default; `telemetry.tracing`
turns on a console or OTLP exporter.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Status, StatusCode

from modelplane.config.schema import TelemetryConfig
from modelplane.errors import UsageError
from modelplane.ledger.records import CallRecord, ServingRecord

_NS = 1_000_000_000


class Tracing:
    """Emits one span per serving and one child span per upstream call."""

    def __init__(self, provider: TracerProvider | None, provider_kinds: dict[str, str] | None = None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("modelplane") if provider else None
        self.provider_kinds = provider_kinds or {}

    @classmethod
    def from_config(cls, config: TelemetryConfig) -> Tracing:
        if config.tracing == "off":
            return cls(None)
        provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
        provider.add_span_processor(BatchSpanProcessor(_exporter(config.tracing)))
        return cls(provider)

    @classmethod
    def with_exporter(cls, exporter: SpanExporter) -> Tracing:
        """Tracing into a given exporter (tests use an in-memory one)."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider)

    def emit(self, record: ServingRecord) -> None:
        if self._tracer is None:
            return
        start = int(record.ts * _NS)
        end = start + int(record.latency_ms * 1_000_000)
        operation = "chat" if record.operation == "chat" else "embeddings"
        span = self._tracer.start_span(f"{operation} {record.feature}", start_time=start)
        span.set_attributes(
            {
                "gen_ai.operation.name": operation,
                "modelplane.feature": record.feature,
                "modelplane.tenant": record.tenant,
                "modelplane.serving.id": record.serving_id,
                "modelplane.cache": record.cache,
                "modelplane.fallback_depth": record.fallback_depth,
                "http.response.status_code": record.http_status,
            }
        )
        if record.status != "ok":
            span.set_status(Status(StatusCode.ERROR, record.error_class or record.status))
        context = trace.set_span_in_context(span)
        for call in record.calls:
            self._call_span(call, operation, context)
        span.end(end_time=end)

    def _call_span(self, call: CallRecord, operation: str, context: Context) -> None:
        assert self._tracer is not None
        start = int(call.ts * _NS)
        span = self._tracer.start_span(f"{operation} {call.model}", context=context, start_time=start)
        span.set_attributes(
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": self.provider_kinds.get(call.provider, call.provider),
                "gen_ai.request.model": call.model,
                "gen_ai.usage.input_tokens": call.input_tokens,
                "gen_ai.usage.output_tokens": call.output_tokens,
            }
        )
        if call.response_model:
            span.set_attribute("gen_ai.response.model", call.response_model)
        if call.error_class:
            span.set_attribute("error.type", call.error_class)
            span.set_status(Status(StatusCode.ERROR, call.error_class))
        span.end(end_time=start + int(call.latency_ms * 1_000_000))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


def _exporter(kind: str) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise UsageError(
            "telemetry.tracing is 'otlp' but the OTLP exporter is not installed",
            "pip install opentelemetry-exporter-otlp-proto-http",
        ) from exc
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter
