"""Observability: OpenTelemetry traces and metrics, and the Prometheus text at /metrics."""
