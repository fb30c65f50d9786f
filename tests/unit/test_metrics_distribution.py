"""The request path's histograms (`Distribution`) export exactly what the OpenTelemetry SDK
histogram they replaced exported: the same `/metrics` lines, and the same points for a push
reader (bucket counts, count, sum, min, max), for the same values."""

from __future__ import annotations

import random
import threading
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from gateway.telemetry.metrics import DURATION_BUCKETS_S, Metrics

# Values on every bound (a value equal to a bound is in that bound's bucket), between them,
# beyond the last one, zero, and a negative one (dropped by both).
EDGES = [0.0, *DURATION_BUCKETS_S, 0.015, 0.5, 99.0, 1e6, -1.0]
LABELS = [
    {"target": "m@a", "outcome": "success"},
    {"target": "m@a", "outcome": "provider_failure"},
    {"target": "x@b", "outcome": "success"},
]


def workload(seed: int = 7) -> list[tuple[float, dict[str, str]]]:
    rng = random.Random(seed)
    out = [(v, labels) for v in EDGES for labels in LABELS]
    out += [(rng.lognormvariate(-3, 2), rng.choice(LABELS)) for _ in range(2000)]
    return out


def sdk() -> tuple[CollectorRegistry, InMemoryMetricReader, Meter]:
    """The OTel SDK as the gateway used it before: a Prometheus registry and a push reader."""
    registry = CollectorRegistry(auto_describe=True)
    prom = PrometheusMetricReader(disable_target_info=True, registry=registry)
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[prom, memory])
    return registry, memory, provider.get_meter("turnout")


def old_path(values: list[tuple[float, dict[str, str]]]) -> tuple[bytes, InMemoryMetricReader]:
    """The SDK histogram the gateway used before, with the same name, unit and buckets."""
    registry, memory, meter = sdk()
    hist = meter.create_histogram(
        "gen_ai.client.operation.duration",
        unit="s",
        description="Upstream attempt duration",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
    )
    for value, labels in values:
        hist.record(value, labels)
    return generate_latest(registry), memory


def new_path(values: list[tuple[float, dict[str, str]]]) -> tuple[Metrics, InMemoryMetricReader]:
    """The gateway's `Metrics` with a push reader, every value recorded as an attempt's."""
    reader = InMemoryMetricReader()
    m = Metrics([reader])
    for value, labels in values:
        m.duration.record(value, labels)
    return m, reader


def family(text: bytes, name: str) -> list[str]:
    return [ln for ln in text.decode().splitlines() if name in ln]


def points(reader: InMemoryMetricReader, name: str) -> dict[Any, HistogramDataPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "turnout"
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out[tuple(sorted(p.attributes.items()))] = p
    return out


def test_the_scrape_shows_what_the_sdk_histogram_showed() -> None:
    values = workload()
    old_text, _ = old_path(values)
    m = Metrics()
    for value, labels in values:
        m.duration.record(value, labels)
    name = "gen_ai_client_operation_duration_seconds"
    old = family(old_text, name)
    assert len(old) == 2 + 3 * (len(DURATION_BUCKETS_S) + 3)  # HELP, TYPE; le=..+Inf, count, sum
    assert family(m.prometheus_text(), name) == old
    m.shutdown()


def test_a_push_reader_gets_the_same_points() -> None:
    values = workload(seed=11)
    _, old_reader = old_path(values)
    m, reader = new_path(values)
    name = "gen_ai.client.operation.duration"
    old, new = points(old_reader, name), points(reader, name)
    assert new.keys() == old.keys() and len(new) == 3
    for key, p in old.items():
        q = new[key]
        assert (q.count, q.bucket_counts, q.min, q.max) == (p.count, p.bucket_counts, p.min, p.max)
        assert tuple(q.explicit_bounds) == tuple(p.explicit_bounds)
        assert abs(q.sum - p.sum) < 1e-9 * max(1.0, abs(p.sum))
    m.shutdown()


def test_counters_and_histograms_share_one_scope_and_nothing_recorded_is_not_exported() -> None:
    reader = InMemoryMetricReader()
    m = Metrics([reader])
    assert reader.get_metrics_data() is None  # nothing at all yet
    m.tokens.add(1, {"target": "t", "gen_ai.token.type": "input"})
    m.flush()
    m.ttft.record(0.2, {"target": "t"})
    data = reader.get_metrics_data()
    assert data is not None
    (rm,) = data.resource_metrics
    (sm,) = rm.scope_metrics  # the SDK's counters and our histogram, in one scope
    names = sorted(metric.name for metric in sm.metrics)
    assert names == ["gen_ai.client.token.usage", "gen_ai.server.time_to_first_token"]
    m.shutdown()


def test_records_from_the_loop_while_a_push_reader_collects_in_its_thread() -> None:
    """A push reader collects from its own thread while the loop records, new label sets
    included: every point it sees is whole (count = its buckets), and nothing raises."""
    reader = InMemoryMetricReader()
    m = Metrics([reader])
    done = threading.Event()
    seen: list[int] = []
    failed: list[BaseException] = []

    def collect() -> None:
        try:
            while not done.is_set():
                data = reader.get_metrics_data()
                for rm in data.resource_metrics if data else ():
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            if metric.name != "turnout.request.duration":
                                continue  # its counter (turnout.requests): checked below
                            for p in metric.data.data_points:
                                assert p.count == sum(p.bucket_counts), p  # type: ignore[union-attr]
                                seen.append(p.count)  # type: ignore[union-attr]
        except BaseException as exc:  # reported to the test's thread below
            failed.append(exc)

    t = threading.Thread(target=collect)
    t.start()
    try:
        for i in range(15_000):
            labels = {"route": f"r{i // 10}", "status": "200"}  # new label sets keep coming
            m.request_duration.record(0.001 * (i % 50), labels)
    finally:
        done.set()
        t.join()
    assert not failed, failed[0]
    assert seen  # the reader did collect while the loop recorded
    got = points(reader, "turnout.request.duration")
    assert len(got) == 1_500 and sum(p.count for p in got.values()) == 15_000
    m.shutdown()


def old_counters(values: list[tuple[float, dict[str, str]]]) -> tuple[bytes, InMemoryMetricReader]:
    """The SDK counter the gateway used beside the histogram: `add(1, labels)` per record."""
    registry, memory, meter = sdk()
    counter = meter.create_counter(
        "turnout.attempts", description="Upstream attempts, by target and outcome"
    )
    for _, labels in values:
        counter.add(1, labels)
    return generate_latest(registry), memory


def test_the_attempts_counter_is_what_the_sdk_counter_was() -> None:
    """Counted by the duration's records (`Counted`): the same `/metrics` lines and the same
    push points as the SDK counter that was added to beside each record - negative values
    (no histogram sample) counted too."""
    values = workload(seed=5)
    old_text, old_reader = old_counters(values)
    m, reader = new_path(values)
    assert family(m.prometheus_text(), "turnout_attempts") == family(old_text, "turnout_attempts")
    assert len(family(old_text, "turnout_attempts_total")) == 2 + 3  # HELP, TYPE, 3 label sets

    def values_of(r: InMemoryMetricReader) -> dict[Any, tuple[Any, ...]]:
        data = r.get_metrics_data()
        assert data is not None
        return {
            tuple(sorted(p.attributes.items())): (p.value, metric.data.is_monotonic, metric.unit)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "turnout.attempts"
            for p in metric.data.data_points
        }

    old, new = values_of(old_reader), values_of(reader)
    assert new == old and len(new) == 3
    m.shutdown()
