"""Gauges read at scrape time from the health store: breaker state, throttling, attempts in
flight per target, and whether the fleet store runs degraded. Nothing on the request path."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway.telemetry.metrics import Metrics
from health.signals import TargetHealth
from health.store import HealthStore

_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


def register_health_gauges(
    metrics: Metrics, store: HealthStore, targets: Callable[[], Iterable[str]]
) -> None:
    """`targets` names the configured targets at scrape time (it follows reloads)."""

    def per_target() -> list[tuple[dict[str, str], TargetHealth]]:
        return [({"target": tid}, h) for tid, h in store.snapshot(targets()).items()]

    metrics.gauge(
        "turnout.breaker.state",
        "0 closed, 1 half-open, 2 open",
        lambda: [(_STATES[h.state.value], labels) for labels, h in per_target()],
    )
    metrics.gauge(
        "turnout.target.throttled",
        "1 while a target is throttled (Retry-After)",
        lambda: [(1.0 if h.throttled_for_s > 0 else 0.0, labels) for labels, h in per_target()],
    )
    metrics.gauge(
        "turnout.target.in_flight",
        "Upstream attempts in flight",
        lambda: [(float(h.in_flight), labels) for labels, h in per_target()],
    )

    def degraded() -> list[tuple[float, dict[str, str]]]:
        st = store.status()
        return [(1.0 if st.degraded else 0.0, {"backend": st.backend})]

    metrics.gauge(
        "turnout.redis.degraded", "1 while the fleet store runs on local health only", degraded
    )
