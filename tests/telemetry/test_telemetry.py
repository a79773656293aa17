"""Prometheus metrics and OpenTelemetry GenAI spans, built from ledger records."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelplane.ledger.records import CallRecord, ServingRecord
from modelplane.telemetry.metrics import Metrics
from modelplane.telemetry.tracing import Tracing


def record(status: str = "ok") -> ServingRecord:
    call = CallRecord(
        id="c1",
        request_id="r1",
        serving_id="s1",
        ts=1_700_000_000.0,
        attempt=0,
        model="small",
        provider="up",
        status="ok" if status == "ok" else "error",
        error_class=None if status == "ok" else "server_error",
        response_model="gpt-4o-mini-2024-07-18",
        input_tokens=100,
        cached_input_tokens=40,
        output_tokens=20,
        cost_usd=0.00016,
        latency_ms=120.0,
        ttft_ms=80.0,
    )
    return ServingRecord(
        id="r1",
        serving_id="s1",
        ts=1_700_000_000.0,
        tenant="acme",
        tier="pro",
        feature="reply",
        operation="chat",
        status=status,
        http_status=200 if status == "ok" else 502,
        model="small",
        provider="up",
        input_tokens=100,
        cached_input_tokens=40,
        output_tokens=20,
        cost_usd=0.00016,
        latency_ms=130.0,
        ttft_ms=85.0,
        config_version="v1",
        calls=[call],
    )


def test_metrics_count_servings_tokens_cost_and_latency() -> None:
    metrics = Metrics()
    metrics.observe(record())
    metrics.observe(record("error"))
    text = metrics.render().decode()
    assert 'modelplane_servings_total{feature="reply",model="small",status="ok"} 1.0' in text
    assert 'modelplane_servings_total{feature="reply",model="small",status="error"} 1.0' in text
    assert 'modelplane_tokens_total{feature="reply",kind="input",model="small"} 200.0' in text
    assert 'modelplane_cost_usd_total{feature="reply",model="small"} 0.00032' in text
    assert 'modelplane_upstream_errors_total{error_class="server_error",model="small"} 1.0' in text
    assert 'modelplane_serving_latency_seconds_bucket{feature="reply",le="0.25",model="small",status="ok"} 1.0' in text


def test_spans_follow_the_genai_conventions() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(exporter)
    tracing.provider_kinds = {"up": "openai"}
    tracing.emit(record())
    spans = {span.name: span for span in exporter.get_finished_spans()}
    serving, call = spans["chat reply"], spans["chat small"]
    assert call.parent is not None and call.parent.span_id == serving.context.span_id
    attrs = dict(call.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "small"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (100, 20)
    assert call.end_time is not None and call.start_time is not None
    assert (call.end_time - call.start_time) == 120_000_000
