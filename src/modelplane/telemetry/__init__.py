"""Telemetry: Prometheus metrics and OpenTelemetry spans with the GenAI semantic conventions."""
