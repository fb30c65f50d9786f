"""Metrics through OpenTelemetry, read out as Prometheus text (a registry per gateway).

GenAI semantic-convention names where they exist (`gen_ai.client.operation.duration`,
`gen_ai.client.token.usage`, `gen_ai.server.time_to_first_token`), `switchyard.*` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from prometheus_client import CollectorRegistry, generate_latest

DURATION_BUCKETS_S = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)


class Metrics:
    def __init__(self, extra_readers: Iterable[MetricReader] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(disable_target_info=True, registry=self.registry)
        self.provider = MeterProvider(metric_readers=[reader, *extra_readers])
        m = self.provider.get_meter("switchyard")
        self.requests = m.create_counter(
            "switchyard.requests", description="Requests answered, by route and status"
        )
        self.attempts = m.create_counter(
            "switchyard.attempts", description="Upstream attempts, by target and outcome"
        )
        self.failovers = m.create_counter(
            "switchyard.failovers",
            description="Attempts that failed on the provider's side (the loop moves on if it "
            "can), by target and reason",
        )
        self.budget_exhausted = m.create_counter(
            "switchyard.retry_budget.exhausted", description="Requests that found no retry budget"
        )
        self.reloads = m.create_counter(
            "switchyard.config.reloads", description="Config reloads, by result"
        )
        self.duration = m.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Upstream attempt duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.ttft = m.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to the first output token, per attempt that produced one",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.request_duration = m.create_histogram(
            "switchyard.request.duration",
            unit="s",
            description="Whole request, as the client saw it",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.tokens = m.create_counter(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens, by type and target"
        )
        self._gauges: list[Callable[[], Iterable[tuple[float, dict[str, str]]]]] = []
        self._meter = m

    def gauge(
        self,
        name: str,
        description: str,
        read: Callable[[], Iterable[tuple[float, dict[str, str]]]],
    ) -> None:
        """An observable gauge whose values are read at scrape time (no per-request cost)."""

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, attrs) for value, attrs in read()]

        self._meter.create_observable_gauge(name, callbacks=[callback], description=description)

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=1000)
