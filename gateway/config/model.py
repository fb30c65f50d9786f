"""The configuration as one typed, immutable value. Built only by `gateway.config.load`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.telemetry.tracing import TraceSettings
from health.settings import HealthSettings
from policies.tasks import DEFAULT_TASK_RULES, TaskRules
from policies.types import Candidate

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-phase upstream timeouts, in seconds. `total_s` bounds a whole request."""

    connect_s: float = 2.0
    headers_s: float = 10.0
    first_token_s: float = 30.0
    idle_s: float = 30.0
    total_s: float = 600.0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    base_url: str
    api_key: str = field(default="", repr=False)  # never printed
    format: str = "openai"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    query: Mapping[str, str] = field(default_factory=dict, repr=False)  # e.g. Azure api-version
    timeouts: Timeouts = Timeouts()
    max_connections: int = 100


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One model on one provider; `profile` is what policies see."""

    id: str
    provider: str
    model: str
    profile: Candidate


@dataclass(frozen=True, slots=True)
class Hedge:
    """Start the next candidate if the first token is this late: a fixed delay, or the
    target's observed p95 time to first token (`after_s` is then the floor)."""

    after_s: float = 2.0
    use_p95: bool = False


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Conditions on request metadata, all of which must hold (none: always matches).

    Several routes may share an alias with different conditions, so the agents of a
    multi-agent system (sending e.g. `x-agent-role: planner` or body `metadata.role`) each
    get their own candidates and policy; the first route whose conditions hold is used."""

    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    metadata: Mapping[str, str] = field(default_factory=dict)  # the body's `metadata` object
    user: str | None = None  # the body's `user`

    @property
    def conditions(self) -> bool:
        return bool(self.headers or self.metadata or self.user)

    def holds(self, headers: Mapping[str, str], payload: Mapping[str, Any]) -> bool:
        for name, value in self.headers.items():
            if headers.get(name) != value:
                return False
        if self.metadata:
            meta = payload.get("metadata")
            if not isinstance(meta, Mapping):
                return False
            for key, value in self.metadata.items():
                if meta.get(key) != value:
                    return False
        return self.user is None or payload.get("user") == self.user


@dataclass(frozen=True, slots=True)
class RouteConfig:
    alias: str
    candidates: tuple[str, ...]
    policy: str = "priority"  # its name, for headers, logs and traces
    policy_spec: Any = field(default=None, compare=False)  # the YAML, built per runtime
    max_attempts: int = 3  # default: resilience.max_attempts
    timeouts: Mapping[str, float] = field(default_factory=dict)  # overrides the provider's
    deadline_s: float | None = None  # default: resilience.deadline_s; None: no deadline
    hedge: Hedge | None = None
    match: RouteMatch = field(default_factory=RouteMatch)
    debug: bool = False  # explain every decision in an `x-turnout-route` response header
    key: str = ""  # unique per route: alias#n (several routes may share an alias)


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """The attempt loop's knobs (defaults: docs/reliability.md)."""

    max_attempts: int = 3
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 1.0
    budget_ratio: float = 0.2
    budget_min_retries: int = 10
    budget_window_s: float = 10.0
    deadline_s: float | None = None  # None: bounded only by each attempt's total_s
    deadline_header: str = "x-turnout-deadline-ms"
    panic: bool = True  # all candidates open: one attempt on the least-bad one


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    config_poll_s: float = 1.0  # watch the config file and reload on change; 0 = off
    grace_s: float = 10.0  # on SIGTERM: how long requests in flight may take to finish
    admin_token: str = field(default="", repr=False)  # protects /admin/* and /ui when set
    debug_header: bool = True  # honour callers' x-turnout-debug (routing explained to them)
    header_timeout_s: float = 10.0  # a request's headers, from its first byte
    body_timeout_s: float = 60.0  # a request's whole body, once its headers are in
    max_connections: int = 1000  # open client connections; above: 503 and close
    # Request-body bytes all requests in flight may hold (each holds ~3x in memory: the body,
    # its parsed form, an attempt's copy); above: 503. One request is always admitted.
    max_body_bytes_in_flight: int = 2 * DEFAULT_MAX_BODY_BYTES


@dataclass(frozen=True, slots=True)
class HealthConfig:
    store: str = "memory"
    redis_url: str = field(default="", repr=False)  # may hold a password: never printed
    key_prefix: str = "turnout"
    sync_period_s: float = 0.25
    redis_timeout_s: float = 0.2
    probe_lock_s: float = 30.0
    pubsub: bool = True
    settings: HealthSettings = field(default_factory=HealthSettings)


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    traces: TraceSettings = field(default_factory=TraceSettings)
    log_format: str = "text"  # text | json (one line per notable event, with ids)
    recent_traces: int = 0  # traces kept for the /ui dashboard (the demo keeps 200); 0 =
    #                         none, and then no span is recorded unless an exporter is set


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    health: HealthConfig
    providers: Mapping[str, ProviderConfig]
    targets: Mapping[str, TargetConfig]
    routes: tuple[RouteConfig, ...]
    source: str = "<memory>"
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    tasks: TaskRules = field(default_factory=lambda: DEFAULT_TASK_RULES)
    _by_alias: Mapping[str, tuple[RouteConfig, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_alias: dict[str, list[RouteConfig]] = {}
        for r in self.routes:
            by_alias.setdefault(r.alias, []).append(r)
        object.__setattr__(self, "_by_alias", {a: tuple(rs) for a, rs in by_alias.items()})

    def route(
        self,
        alias: str,
        headers: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> RouteConfig | None:
        """The first route for `alias` whose `match` holds for this request."""
        for r in self._by_alias.get(alias, ()):
            if not r.match.conditions or r.match.holds(headers or {}, payload or {}):
                return r
        return None

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(self._by_alias)
