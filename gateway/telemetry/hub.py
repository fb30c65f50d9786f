"""One place that turns what the gateway does into spans and metrics.

SERVER span per request (inside the caller's trace), CLIENT span per upstream attempt with
the OpenTelemetry GenAI attributes plus `turnout.*` for the decisions: route, policy,
ranked candidates, attempt number, probe/hedge/panic, failover reason, retry budget left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.config.model import TelemetryConfig
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.recent import RecentTraces
from gateway.telemetry.tracing import TraceSettings, Tracing, otlp_protocol
from health.outcome import Outcome, OutcomeKind
from policies.types import Decision

MALFORMED_EVENT = "turnout.stream.malformed"  # on the attempt's span
GENAI_OPERATION = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}


class Usage(msgspec.Struct, frozen=True, gc=False):
    input_tokens: int | None = None
    output_tokens: int | None = None
    response_model: str | None = None
    cached_tokens: int | None = None  # of the input, read from a prompt cache

    @staticmethod
    def of(payload: Any) -> Usage | None:
        """Read `usage` and `model` from an OpenAI-style response object, if present."""
        if not isinstance(payload, Mapping):
            return None
        usage = payload.get("usage")
        model = payload.get("model")
        model = model if isinstance(model, str) else None
        if not isinstance(usage, Mapping):
            return Usage(response_model=model) if model else None
        inp, out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Usage(
            inp if isinstance(inp, int) else None,
            out if isinstance(out, int) else None,
            model,
        )

    @staticmethod
    def of_anthropic(payload: Any, before: Usage | None = None) -> Usage | None:
        """Read the usage of a Messages API answer or stream event (`message_start` holds it
        in its `message`; `message_delta` the counts so far) over what was known `before`.
        Input tokens count cache reads and writes, as OpenAI's `prompt_tokens` do."""
        usage, model = _held(payload, "message")
        if not isinstance(usage, Mapping):
            return Usage(response_model=model) if model and before is None else before
        inp, out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
        read = _count(usage.get("cache_read_input_tokens"))
        wrote = _count(usage.get("cache_creation_input_tokens"))
        total = None if inp is None else inp + (read or 0) + (wrote or 0)
        prior = before or Usage()
        return Usage(
            prior.input_tokens if total is None else total,
            prior.output_tokens if out is None else out,
            model or prior.response_model,
            prior.cached_tokens if read is None else read,
        )

    @staticmethod
    def of_responses(payload: Any, before: Usage | None = None) -> Usage | None:
        """Read the usage of a Responses API `response` (or an event that carries one, as
        `response.completed` does) over what was known `before`; input tokens count the
        cached ones, as OpenAI's `prompt_tokens` do."""
        usage, model = _held(payload, "response")
        if not isinstance(usage, Mapping):
            return Usage(response_model=model) if model and before is None else before
        details = usage.get("input_tokens_details")
        cached = _count(details.get("cached_tokens") if isinstance(details, Mapping) else None)
        inp, out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
        prior = before or Usage()
        return Usage(
            prior.input_tokens if inp is None else inp,
            prior.output_tokens if out is None else out,
            model or prior.response_model,
            prior.cached_tokens if cached is None else cached,
        )


def _held(payload: Any, key: str) -> tuple[Any, str | None]:
    """(`usage`, `model`) of an answer, or of the one an event holds under `key` (Anthropic's
    `message_start` its `message`, a Responses event its `response`)."""
    if not isinstance(payload, Mapping):
        return None, None
    inner = payload.get(key)
    if isinstance(inner, Mapping):
        payload = inner
    model = payload.get("model")
    return payload.get("usage"), model if isinstance(model, str) else None


def _count(value: Any) -> int | None:
    """A token count as the JSON gave it: an int (never a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class Telemetry:
    traces: TraceSettings = field(default_factory=TraceSettings)
    span_processors: Iterable[SpanProcessor] = ()
    metric_readers: Iterable[MetricReader] = ()
    # kept for the dashboard (/ui); 0: none, spans only for export (telemetry.recent_traces)
    recent_traces: int = TelemetryConfig().recent_traces

    def __post_init__(self) -> None:
        self.recent = RecentTraces(max(1, self.recent_traces))
        recent = [self.recent] if self.recent_traces > 0 else []
        self.tracing = Tracing(self.traces, [*recent, *self.span_processors])
        readers = list(self.metric_readers)
        if self.traces.metrics_otlp:
            readers.append(otlp_metric_reader(self.traces))
        self.metrics = Metrics(readers)
        self.tracer = self.tracing.tracer

    # -- spans ---------------------------------------------------------------------------------

    def attempt_span(
        self,
        operation: str,
        target_id: str,
        provider: str,
        model: str,
        base_url: str,
        attrs: Mapping[str, Any],
    ) -> trace.Span:
        op = GENAI_OPERATION.get(operation, operation)
        url = urlsplit(base_url)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            "turnout.target": target_id,
            **attrs,
        }
        return self.tracer.start_span(f"{op} {model}", kind=SpanKind.CLIENT, attributes=attributes)

    def settled(
        self,
        span: trace.Span,
        target_id: str,
        outcome: Outcome,
        duration_s: float,
        usage: Usage | None = None,
    ) -> None:
        """An attempt was settled (`gateway.pipeline.settle`): close its span and count it."""
        kind = outcome.kind.value
        target = ("target", target_id)
        key = (target, ("outcome", kind))
        m = self.metrics
        m.duration.record_key(duration_s, key)  # and counted in turnout.attempts
        if outcome.ttft_s is not None and outcome.kind is OutcomeKind.SUCCESS:
            m.ttft.record_key(outcome.ttft_s, (target,))
        if usage is not None:
            if usage.input_tokens is not None:
                m.tokens.add_key(usage.input_tokens, (target, ("gen_ai.token.type", "input")))
            if usage.output_tokens is not None:
                m.tokens.add_key(usage.output_tokens, (target, ("gen_ai.token.type", "output")))
        if span is trace.INVALID_SPAN:  # not tracing: nothing was started, nothing to end
            return
        if not span.is_recording():
            span.end()
            return
        span.set_attribute("turnout.outcome", kind)
        if outcome.status is not None:
            span.set_attribute("http.response.status_code", outcome.status)
        if outcome.ttft_s is not None:
            span.set_attribute("turnout.ttft_ms", round(outcome.ttft_s * 1000, 3))
        if usage is not None:
            if usage.response_model:
                span.set_attribute("gen_ai.response.model", usage.response_model)
            if usage.input_tokens is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            if usage.output_tokens is not None:
                span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if usage.cached_tokens is not None:
                span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens)
        if outcome.kind not in (OutcomeKind.SUCCESS, OutcomeKind.NEUTRAL):
            span.set_attribute("error.type", outcome.summary)
            span.set_status(Status(StatusCode.ERROR, outcome.summary))
        elif outcome.kind is OutcomeKind.NEUTRAL:
            span.set_attribute("turnout.neutral_reason", outcome.reason.value)
        span.end()

    def failover(self, target_id: str, outcome: Outcome, attempt: int) -> None:
        self.metrics.failovers.add(1, {"target": target_id, "reason": outcome.summary})
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "turnout.failover",
                {
                    "turnout.target": target_id,
                    "turnout.reason": outcome.summary,
                    "turnout.attempt": attempt,
                },
            )

    def malformed_events(self, span: Any, target_id: str, count: int, limit: int) -> None:
        """A committed stream met `count` malformed events (up to `limit` were dropped)."""
        self.metrics.malformed_events.add(count, {"target": target_id})
        if span is not None and span.is_recording():
            span.add_event(
                MALFORMED_EVENT,
                {"turnout.malformed_events": count, "turnout.malformed_max": limit},
            )

    def ranked(self, route: str, decision: Decision, explanation: str) -> None:
        """The routing decision on the request's span: order, scores, why each was left out."""
        span = trace.get_current_span()
        if span.is_recording():
            ranked = decision.ranked
            span.set_attribute("turnout.route", route)
            span.set_attribute("turnout.policy", decision.policy)
            span.set_attribute("turnout.task", decision.task)
            span.set_attribute("turnout.candidates", [r.candidate.target_id for r in ranked])
            span.set_attribute("turnout.scores", [round(r.score, 4) for r in ranked])
            span.set_attribute("turnout.notes", [r.note for r in ranked])
            if decision.excluded:
                span.set_attribute(
                    "turnout.excluded",
                    [f"{e.candidate.target_id}: {e.by}: {e.reason}" for e in decision.excluded],
                )
            if explanation:
                span.set_attribute("turnout.decision", explanation)

    def shutdown(self) -> None:
        self.tracing.shutdown()
        self.metrics.shutdown()


def otlp_metric_reader(settings: TraceSettings) -> MetricReader:
    """Push metrics by OTLP every 15 s (same endpoint and protocol as traces)."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    endpoint = settings.otlp_endpoint or None
    if otlp_protocol(settings) == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            return PeriodicExportingMetricReader(
                GrpcMetricExporter(endpoint=endpoint, timeout=2), export_interval_millis=15000
            )
        except ImportError:
            pass
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    if endpoint and not endpoint.rstrip("/").endswith("/v1/metrics"):
        endpoint = endpoint.rstrip("/") + "/v1/metrics"
    return PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, timeout=2), export_interval_millis=15000
    )
