"""Metrics through OpenTelemetry, read out as Prometheus text (a registry per gateway).

GenAI semantic-convention names where they exist (`gen_ai.client.operation.duration`,
`gen_ai.client.token.usage`, `gen_ai.server.time_to_first_token`), `turnout.*` otherwise.

The SDK's `Counter.add` and `Histogram.record` cost ~10 µs each here (attribute cleaning and
hashing on every call). The per-request counters go through a `Tally` that sums in a dict and
hands the SDK one add per label set when flushed: before every `/metrics` scrape, at
shutdown, and within `FLUSH_S` of any add (so an OTLP push is at most that late). The
per-request histograms are `Distribution`s (`gateway.telemetry.distribution`): bucket counts
kept in a dict, handed to every reader as points when it collects. Exemplars are off:
nothing reads them, and the default filter looks up the current span on every measurement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Counter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest

from gateway.telemetry.distribution import Counted, Distribution, Key, attach

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


FLUSH_S = 1.0
SCOPE = InstrumentationScope("turnout")  # the meter's: every instrument here is in it

try:  # opentelemetry-sdk >= 1.28
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter

    _NO_EXEMPLARS: dict[str, Any] = {"exemplar_filter": AlwaysOffExemplarFilter()}
except ImportError:  # older SDKs record no exemplars anyway
    _NO_EXEMPLARS = {}


class Tally:
    """An OTel counter's front for the request path: `add` sums per label set (~1 µs)."""

    __slots__ = ("_counter", "_owner", "_sums")

    def __init__(self, counter: Counter, owner: Metrics) -> None:
        self._counter = counter
        self._owner = owner
        self._sums: dict[Key, float] = {}

    def add(self, amount: float, attributes: Mapping[str, str]) -> None:
        self.add_key(amount, tuple(attributes.items()))

    def add_key(self, amount: float, key: Key) -> None:
        """`add` with the labels as (name, value) pairs already: no dict on the hot path."""
        sums = self._sums
        was_empty = not sums
        sums[key] = sums.get(key, 0) + amount
        if was_empty:
            self._owner.flush_soon()

    def flush(self) -> None:
        sums, self._sums = self._sums, {}
        for key, amount in sums.items():
            self._counter.add(amount, dict(key))


class Metrics:
    def __init__(self, extra_readers: Iterable[MetricReader] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(disable_target_info=True, registry=self.registry)
        readers = [reader, *extra_readers]
        resource = Resource.create()
        self.provider = MeterProvider(metric_readers=readers, resource=resource, **_NO_EXEMPLARS)
        m = self.provider.get_meter(SCOPE.name)
        self._timer: asyncio.TimerHandle | None = None
        self.failovers = m.create_counter(
            "turnout.failovers",
            description="Attempts that failed on the provider's side (the loop moves on if it "
            "can), by target and reason",
        )
        self.malformed_events = m.create_counter(
            "turnout.stream.malformed_events",
            description="Malformed SSE events in streams after their first byte (dropped up to "
            "resilience.stream_malformed_max per stream; one more ends the stream), by target",
        )
        self.budget_exhausted = m.create_counter(
            "turnout.retry_budget.exhausted", description="Requests that found no retry budget"
        )
        self.reloads = m.create_counter(
            "turnout.config.reloads", description="Config reloads, by result"
        )
        # Each attempt and each answered request is recorded once, in its duration; the
        # counters of attempts and requests are those records' counts (`Counted`).
        self.duration = Distribution(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Upstream attempt duration",
            bounds=DURATION_BUCKETS_S,
            counted=Counted("turnout.attempts", "Upstream attempts, by target and outcome"),
        )
        self.ttft = Distribution(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to the first output token, per attempt that produced one",
            bounds=DURATION_BUCKETS_S,
        )
        self.request_duration = Distribution(
            "turnout.request.duration",
            unit="s",
            description="Whole request, as the client saw it",
            bounds=DURATION_BUCKETS_S,
            counted=Counted("turnout.requests", "Requests answered, by route and status"),
        )
        for r in readers:
            attach(r, (self.duration, self.ttft, self.request_duration), SCOPE, resource)
        self.tokens = Tally(
            m.create_counter(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Tokens, by type and target",
            ),
            self,
        )
        # Per client key (gateway.limits): attributes are configured names and labels only.
        self.client_requests = Tally(
            m.create_counter(
                "turnout.client.requests",
                description="Requests of each client key, admitted or limited (by which limit)",
            ),
            self,
        )
        self.client_tokens = Tally(
            m.create_counter(
                "turnout.client.tokens",
                unit="{token}",
                description="Tokens of each client key; estimated: a stream without usage",
            ),
            self,
        )
        self.client_spend = Tally(
            m.create_counter(
                "turnout.client.spend",
                unit="USD",
                description="Spend of each client key at the answering target's price",
            ),
            self,
        )
        self._tallies = (
            self.tokens,
            self.client_requests,
            self.client_tokens,
            self.client_spend,
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

    def flush_soon(self) -> None:
        """Flush within FLUSH_S (on the running loop; at once when there is none)."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Hand every tally to the SDK. Call on the loop that adds (or when it is idle)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for tally in self._tallies:
            tally.flush()

    def prometheus_text(self) -> bytes:
        self.flush()
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        """Shut the SDK down (may run in a thread): `flush()` first, on the loop that adds."""
        self.provider.shutdown(timeout_millis=1000)
