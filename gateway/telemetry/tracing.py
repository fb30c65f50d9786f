"""Tracing with opentelemetry-sdk: a provider per gateway, W3C context in and out.

Export is configured in YAML or by the standard variables (`OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_TRACES_SAMPLER_ARG`). Spans go through a batch processor
with a bounded queue and short timeouts, so a collector that is down never slows or fails a
request and never holds shutdown for long. With nothing to export to, no span is recorded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from health.declared import setting

EXPORTERS = ("none", "console", "otlp")
log = logging.getLogger("turnout.telemetry")


def otlp_protocol(settings: TraceSettings) -> str:
    return (
        (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or settings.otlp_protocol
        )
        .strip()
        .lower()
    )


@dataclass(frozen=True, slots=True)
class TraceSettings:
    """`telemetry.*` for traces: the tracer is set up once, so none applies live."""

    service_name: str = setting("turnout", "the service.name resource attribute", live=False)
    exporter: str = setting(
        "none",
        "none, console or otlp; OTEL_TRACES_EXPORTER overrides",
        live=False,
        choices=EXPORTERS,
        lower=True,
        key="traces_exporter",
    )
    otlp_endpoint: str = setting(  # empty: the exporter's own default / OTEL_EXPORTER_OTLP_*
        "",
        "e.g. http://collector:4318; else OTEL_EXPORTER_OTLP_ENDPOINT or the default",
        live=False,
    )
    sample_ratio: float = setting(
        1.0,
        "head sampling (parent-based); OTEL_TRACES_SAMPLER_ARG overrides",
        live=False,
        minimum=0,
        maximum=1,
    )
    record_content: bool = setting(  # prompts and completions stay out of spans
        False, "reserved: prompts and completions are never recorded yet", live=False
    )
    otlp_protocol: str = setting(  # any other value is read as HTTP
        "http/protobuf",
        "grpc needs opentelemetry-exporter-otlp-proto-grpc; OTEL_EXPORTER_OTLP_PROTOCOL overrides",
        live=False,
        choices=("http/protobuf", "grpc"),
        loose=True,
        lower=True,
    )
    metrics_otlp: bool = setting(  # Prometheus /metrics stays
        False, "also push metrics by OTLP every 15 s", live=False
    )


def _exporter(settings: TraceSettings) -> SpanExporter | None:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", settings.exporter).strip().lower()
    if kind == "console":
        return ConsoleSpanExporter()
    if kind == "otlp":
        if otlp_protocol(settings) == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcSpanExporter,
                )
            except ImportError:
                log.warning("OTLP over gRPC asked for but its package is missing: using HTTP")
            else:
                grpc: SpanExporter = GrpcSpanExporter(
                    endpoint=settings.otlp_endpoint or None, timeout=2
                )
                return grpc
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint or None
        if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return OTLPSpanExporter(endpoint=endpoint, timeout=2)
    return None


class Tracing:
    def __init__(self, settings: TraceSettings, processors: Iterable[SpanProcessor] = ()) -> None:
        self.settings = settings
        exporter = _exporter(settings)
        extra = list(processors)
        ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", settings.sample_ratio))
        sampler = ParentBased(TraceIdRatioBased(ratio)) if exporter or extra else ALWAYS_OFF
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}), sampler=sampler
        )
        if exporter is not None:
            self.provider.add_span_processor(
                BatchSpanProcessor(
                    exporter,
                    max_queue_size=2048,
                    schedule_delay_millis=1000,
                    export_timeout_millis=2000,
                )
            )
        for p in extra:
            self.provider.add_span_processor(p)
        self.tracer = self.provider.get_tracer("turnout")
        self.recording = sampler is not ALWAYS_OFF
        self._propagator = TraceContextTextMapPropagator()

    def extract(self, headers: Mapping[str, str]) -> Context:
        """The caller's trace context (traceparent/tracestate), so our span joins its trace."""
        return self._propagator.extract(headers)

    def inject(self, headers: MutableMapping[str, str], span: trace.Span) -> None:
        """Pass the attempt's span to the provider as its parent."""
        self._propagator.inject(headers, context=trace.set_span_in_context(span))

    def shutdown(self) -> None:
        self.provider.force_flush(timeout_millis=1000)
        self.provider.shutdown()
