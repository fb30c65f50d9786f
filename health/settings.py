"""Health knobs, as frozen values. Defaults: docs/reliability.md.

Each field is declared once with its doc and checks (`health.declared.setting`): the
config loader, the JSON Schema and the reload report read them from here. The store is built
at start with these values, so none of them applies live.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from health.declared import nested, setting


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a target's breaker trips, how long it stays open, and how it closes again."""

    consecutive_failures: int = setting(
        5, "trip after this many provider failures in a row", live=False, positive=True
    )
    failure_rate: float = setting(
        0.5,
        "or when the window's failure rate reaches this (with min_calls)",
        live=False,
        positive=True,
    )
    min_calls: int = setting(
        20, "calls in the window needed before failure_rate counts", live=False, positive=True
    )
    open_s: float = setting(
        10.0,
        "open time, and the cadence at which an outage is probed; doubles on each trip that "
        "follows a recovery within open_max_s (flapping), not on failed probes",
        live=False,
        positive=True,
    )
    open_max_s: float = setting(120.0, "cap of the open time", live=False, positive=True)
    jitter: float = setting(0.2, "+- fraction applied to open times", live=False)
    half_open_successes: int = setting(
        2, "probe successes needed to close; one probe at a time", live=False, positive=True
    )
    slow_start_s: float = setting(
        20.0,
        "after a recovery, the target's share of traffic ramps from 10% to all of it over "
        "this long (a provider that just came back is not flooded); 0: all at once",
        live=False,
        minimum=0,
    )
    misconfigured_open_s: float = setting(
        300.0, "how long a 401/403/404 keeps a target aside", live=False, positive=True
    )


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    """How long a 429 keeps a target aside: without a usable Retry-After, `default_s` doubling
    up to `max_s`; with one, what it says, at most `retry_after_max_s` (a provider's "come back
    tomorrow" must not bench a target for a day unseen)."""

    default_s: float = setting(
        5.0,
        "without a usable Retry-After: first wait; doubles on each 429",
        live=False,
        positive=True,
    )
    max_s: float = setting(60.0, "cap of that wait", live=False, positive=True)
    retry_after_max_s: float = setting(
        300.0,
        "cap of a provider's Retry-After (a huge one does not bench a target for long)",
        live=False,
        positive=True,
    )


@dataclass(frozen=True, slots=True)
class HangSettings:
    """When a target that has stopped answering is passed over by new requests: requests
    have waited on it, without a single answer coming back, for longer than
    max(floor_s, factor x its TTFT peak-EWMA) (floor_s alone while it has no history). The
    first answer of any kind, or a breaker trip, ends it."""

    enabled: bool = setting(
        True,
        "pass over a target whose requests have waited far past its usual time to first "
        "byte with nothing coming back (it takes a request only when nothing else is admitted)",
        live=False,
    )
    factor: float = setting(
        4.0,
        "not answering: silent for longer than this many times its TTFT peak-EWMA...",
        live=False,
        positive=True,
    )
    floor_s: float = setting(
        1.0,
        "...and never sooner than this; the whole limit while it has no history",
        live=False,
        positive=True,
    )


@dataclass(frozen=True, slots=True)
class HealthSettings:
    window_s: float = setting(10.0, "the sliding error-rate window", live=False, positive=True)
    bucket_s: float = setting(
        1.0, "bucket width of the window (<= window_s)", live=False, positive=True
    )
    ewma_tau_s: float = setting(
        10.0, "decay time constant of the latency/TTFT peak-EWMA", live=False, positive=True
    )
    breaker: BreakerSettings = field(
        default_factory=BreakerSettings, metadata=nested("the per-target circuit breaker")
    )
    throttle: ThrottleSettings = field(
        default_factory=ThrottleSettings, metadata=nested("how long a 429 keeps a target aside")
    )
    hang: HangSettings = field(
        default_factory=HangSettings,
        metadata=nested("when a target that stopped answering is passed over"),
    )


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """The Redis fleet store (`health.fleet.FleetStore`): `health.*` in the config."""

    url: str = setting(
        "",
        "required when store is redis: redis://[:pw@]host:port/db, rediss://, unix://, "
        "redis+sentinel://, redis+cluster:// (TURNOUT_REDIS_URL, when set, wins)",
        live=False,
        secret=True,  # may hold a password
        key="redis_url",
    )
    prefix: str = setting(
        "turnout",
        "namespace for keys and the pub/sub channel (several fleets, one Redis)",
        live=False,
        or_default=True,
        key="key_prefix",
    )
    sync_period_s: float = setting(
        0.25, "reconciliation period with Redis", live=False, positive=True
    )
    timeout_s: float = setting(
        0.2,
        "socket timeout of the background Redis client",
        live=False,
        positive=True,
        key="redis_timeout_s",
    )
    probe_lock_s: float = setting(
        30.0, "longest hold of the fleet-wide half-open probe lock", live=False, positive=True
    )
    half_open_grace_s: float = 600.0  # how long the fleet remembers a target is being probed
    heartbeat_s: float = 1.0  # PING on the subscribed connection this often
    pubsub: bool = setting(  # False: reconciliation alone (also forced for Redis Cluster)
        True,
        "push events through pub/sub as well as keys; false: reconciliation alone",
        live=False,
    )
