"""Health knobs, as frozen values. Defaults are RELIABILITY.md's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a target's breaker trips, how long it stays open, and how it closes again."""

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    min_calls: int = 20
    open_s: float = 10.0
    open_max_s: float = 120.0
    jitter: float = 0.2
    half_open_successes: int = 2
    misconfigured_open_s: float = 300.0


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    """How long a 429 without a usable Retry-After keeps a target aside."""

    default_s: float = 5.0
    max_s: float = 60.0


@dataclass(frozen=True, slots=True)
class HealthSettings:
    window_s: float = 10.0
    bucket_s: float = 1.0
    ewma_tau_s: float = 10.0
    breaker: BreakerSettings = BreakerSettings()
    throttle: ThrottleSettings = ThrottleSettings()
