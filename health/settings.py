"""Health knobs, as frozen values. Defaults: docs/reliability.md."""

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
    """How long a 429 keeps a target aside: without a usable Retry-After, `default_s` doubling
    up to `max_s`; with one, what it says, at most `retry_after_max_s` (a provider's "come back
    tomorrow" must not bench a target for a day unseen)."""

    default_s: float = 5.0
    max_s: float = 60.0
    retry_after_max_s: float = 300.0


@dataclass(frozen=True, slots=True)
class HealthSettings:
    window_s: float = 10.0
    bucket_s: float = 1.0
    ewma_tau_s: float = 10.0
    breaker: BreakerSettings = BreakerSettings()
    throttle: ThrottleSettings = ThrottleSettings()


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """The Redis fleet store (`health.fleet.FleetStore`)."""

    url: str
    prefix: str = "turnout"
    sync_period_s: float = 0.25
    timeout_s: float = 0.2
    probe_lock_s: float = 30.0
    half_open_grace_s: float = 600.0  # how long the fleet remembers a target is being probed
    heartbeat_s: float = 1.0
    pubsub: bool = True  # False: reconciliation alone (also forced for Redis Cluster)
