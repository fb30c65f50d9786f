"""Histograms for the request path: a value costs one dict lookup and a bisect, not the SDK's
~10 µs of attribute cleaning, hashing and locking (three per request added up to ~7 % of a
request's CPU).

A `Distribution` keeps, per label set, the bucket counts, sum, count, min and max — the
same cumulative point the SDK's explicit-bucket histogram aggregation keeps — and hands every
OpenTelemetry metric reader (the Prometheus registry behind `/metrics`, an OTLP push, a
test's in-memory reader) one `HistogramDataPoint` per label set when it collects, next to the
SDK's own instruments (`attach`). A distribution that is `Counted` exports the number of its
records as a counter too (attempts, requests): one record on the request path for both.
`tests/unit/test_metrics_distribution.py` checks the exported numbers against the SDK
histogram and counter they replace.

Points are cumulative (what Prometheus reads, and the SDK's default for OTLP too): a reader
configured to prefer delta temporality for histograms still gets cumulative ones, marked so.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

Key = tuple[tuple[str, str], ...]


class _Point:
    __slots__ = ("calls", "count", "counts", "max", "min", "start_ns", "sum")

    def __init__(self, buckets: int) -> None:
        self.start_ns = time_ns()
        self.counts = [0] * buckets
        self.calls = 0  # every record, a negative value too (the counter's value)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")


@dataclass(frozen=True, slots=True)
class Counted:
    """A counter of a `Distribution`'s records, by the same labels: what an SDK counter given
    `add(1, labels)` beside every `record(value, labels)` would export, at no cost of its own
    (the point's count is the counter's value)."""

    name: str
    description: str
    unit: str = ""


class Distribution:
    """One histogram (and with `counted` a counter of its records): `record(value, labels)`
    is all the request path pays."""

    __slots__ = ("_lock", "_points", "bounds", "counted", "description", "name", "unit")

    def __init__(
        self,
        name: str,
        *,
        unit: str,
        description: str,
        bounds: Sequence[float],
        counted: Counted | None = None,
    ) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.bounds = tuple(bounds)
        self.counted = counted
        self._points: dict[Key, _Point] = {}
        # A push reader collects from its own thread; the loop records meanwhile.
        self._lock = threading.Lock()

    def record(self, value: float, attributes: Mapping[str, str]) -> None:
        self.record_key(value, tuple(attributes.items()))

    def record_key(self, value: float, key: Key) -> None:
        """`record` with the labels as (name, value) pairs already: no dict on the hot path."""
        with self._lock:
            point = self._points.get(key)
            if point is None:
                if value < 0 and self.counted is None:
                    return
                point = self._points[key] = _Point(len(self.bounds) + 1)
            point.calls += 1
            if value < 0:  # as the SDK: a histogram of durations takes no negative value
                return
            point.counts[bisect_left(self.bounds, value)] += 1
            point.count += 1
            point.sum += value
            if value < point.min:
                point.min = value
            if value > point.max:
                point.max = value

    def metrics(self, now_ns: int) -> list[Metric]:
        """The OTel form of everything recorded so far, read at one instant: the histogram,
        and the counter if `counted` (none of either before the first record)."""
        with self._lock:
            hist = [
                HistogramDataPoint(
                    attributes=dict(key),
                    start_time_unix_nano=p.start_ns,
                    time_unix_nano=now_ns,
                    count=p.count,
                    sum=p.sum,
                    bucket_counts=tuple(p.counts),
                    explicit_bounds=self.bounds,
                    min=p.min,
                    max=p.max,
                )
                for key, p in self._points.items()
                if p.count  # a label set with negative values alone: none (as the SDK)
            ]
            c = self.counted
            calls = (
                [
                    NumberDataPoint(dict(key), p.start_ns, now_ns, p.calls)
                    for key, p in self._points.items()
                ]
                if c is not None
                else []
            )
        out = []
        if hist:
            data = Histogram(hist, AggregationTemporality.CUMULATIVE)
            out.append(Metric(self.name, self.description, self.unit, data))
        if c is not None and calls:
            counter = Sum(calls, AggregationTemporality.CUMULATIVE, is_monotonic=True)
            out.append(Metric(c.name, c.description, c.unit, counter))
        return out


def attach(
    reader: MetricReader,
    distributions: Iterable[Distribution],
    scope: InstrumentationScope,
    resource: Resource,
) -> None:
    """Make `reader` see `distributions` whenever it collects, in `scope`, beside what the
    SDK hands it. Call after the reader joined its MeterProvider (which sets the callback
    wrapped here: `MetricReader._set_collect_callback`, the SDK's own hook)."""
    own = tuple(distributions)
    collect: Callable[..., Any] | None = reader._collect
    if collect is None:
        raise RuntimeError("attach a reader after its MeterProvider is built")

    def with_distributions(r: MetricReader, timeout_millis: float = 10_000) -> Any:
        data = collect(r, timeout_millis=timeout_millis)
        now = time_ns()
        extra = [m for d in own for m in d.metrics(now)]
        return _merged(data, extra, scope, resource) if extra else data

    reader._set_collect_callback(with_distributions)


def _merged(
    data: MetricsData | None,
    extra: list[Metric],
    scope: InstrumentationScope,
    resource: Resource,
) -> MetricsData:
    """`data` with `extra` in `scope` (added to the SDK's metrics of that scope, if any)."""
    if data is None or not data.resource_metrics:
        sm = ScopeMetrics(scope, extra, scope.schema_url or "")
        return MetricsData([ResourceMetrics(resource, [sm], resource.schema_url)])
    first, *rest = data.resource_metrics
    scopes = list(first.scope_metrics)
    for i, sm in enumerate(scopes):
        if sm.scope.name == scope.name:
            scopes[i] = replace(sm, metrics=[*sm.metrics, *extra])
            break
    else:
        scopes.append(ScopeMetrics(scope, extra, scope.schema_url or ""))
    return MetricsData([replace(first, scope_metrics=scopes), *rest])
