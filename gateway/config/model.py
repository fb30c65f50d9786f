"""The configuration as one typed, immutable value. Built only by `gateway.config.load`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config.clients import ClientConfig
from gateway.resilience.budget import BudgetSettings
from gateway.telemetry.tracing import TraceSettings
from health.declared import INLINE, nested, setting
from health.settings import FleetSettings, HealthSettings
from policies.loading import DEFAULT_POLICY_FACTORY, PolicyFactory
from policies.tasks import DEFAULT_TASK_RULES, TaskRules
from policies.types import Candidate

DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
FORMATS = ("openai", "anthropic", "gemini")
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")  # providers.*.max_tokens_field
# The ingresses: /v1/chat/completions, /v1/messages, /v1/responses (gateway.edge.ingress).
CLIENT_FORMATS = ("openai", "anthropic", "responses")
TRANSLATIONS = ("lossy", "strict")
STORES = ("memory", "redis")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class AdaptiveTimeouts:
    """A target's first-token and idle limits from its observed p95 time to first token:
    clamp(factor x p95, floor_s, cap_s) in place of the fixed ones, so a slow but healthy
    model is not cut by a fixed number and a dead one is cut well before it. The last
    candidate a request can try keeps at least its fixed limits; a target with no samples
    gets the fixed ones."""

    enabled: bool = setting(
        False,
        "first_token_s and idle_s from the target's p95 time to first token (x factor, "
        "within floor_s and cap_s); the last candidate keeps at least the fixed ones",
        live=True,
    )
    factor: float = setting(
        3.0, "the limit is this many times the p95...", live=True, positive=True
    )
    floor_s: float = setting(5.0, "...never below this...", live=True, positive=True)
    cap_s: float = setting(120.0, "...nor above this", live=True, positive=True)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-phase upstream timeouts, in seconds. `total_s` bounds a whole request."""

    connect_s: float = setting(2.0, "seconds: TCP (+TLS) connect", live=True, positive=True)
    headers_s: float = setting(
        10.0, "seconds: response headers of a streaming request", live=True, positive=True
    )
    first_token_s: float = setting(
        30.0,
        "seconds: first output token of a stream (a non-streaming answer gets total_s)",
        live=True,
        positive=True,
    )
    idle_s: float = setting(
        30.0, "seconds: longest silence between two streamed chunks", live=True, positive=True
    )
    total_s: float = setting(
        600.0,
        "seconds: a whole attempt, and a non-streaming answer's wait; re-sent only within a "
        "deadline",
        live=True,
        positive=True,
    )
    adaptive: AdaptiveTimeouts = field(
        default_factory=AdaptiveTimeouts,
        metadata=nested("first-token and idle limits from the target's observed p95 TTFT"),
    )


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    base_url: str
    api_key: str = setting(
        "",
        "sent as `Authorization: Bearer ...` (anthropic: `x-api-key`; gemini: `x-goog-api-key`); "
        "empty sends none",
        live=True,
        secret=True,
    )
    format: str = setting(
        "openai",
        "wire format: openai (Chat Completions), anthropic (Messages API; chat only), gemini "
        "(Generative Language API generateContent; chat only)",
        live=True,
        choices=FORMATS,
    )
    max_tokens_field: str = setting(
        "max_tokens",
        "where a translated request's output limit goes, to an openai-format provider: "
        "max_tokens (every OpenAI-compatible server) or max_completion_tokens (what OpenAI's "
        "reasoning models take: they refuse max_tokens)",
        live=True,
        choices=MAX_TOKENS_FIELDS,
    )
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    query: Mapping[str, str] = field(default_factory=dict, repr=False)  # e.g. Azure api-version
    timeouts: Timeouts = field(
        default_factory=Timeouts, metadata=nested("per-phase upstream timeouts, in seconds")
    )
    max_connections: int = setting(
        100, "connection pool size to this provider", live=True, positive=True
    )
    same_target_retries: int | None = setting(
        None,
        "this provider's targets: same-target retries (default: resilience.same_target_retries)",
        live=True,
        minimum=0,
    )
    retry_after_wait_s: float | None = setting(
        None,
        "this provider's targets: longest Retry-After waited out (default: "
        "resilience.retry_after_wait_s)",
        live=True,
        minimum=0,
    )


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
class ResilienceConfig:
    """The attempt loop's knobs (defaults: docs/reliability.md). All apply live: each request
    reads them, and a reload hands the budget's to the retry budget."""

    max_attempts: int = setting(
        3,
        "targets tried per request (same-target retries come on top; routes may override)",
        live=True,
        positive=True,
    )
    backoff_base_s: float = setting(0.05, "full-jitter backoff base", live=True, positive=True)
    backoff_cap_s: float = setting(1.0, "full-jitter backoff cap", live=True, positive=True)
    same_target_retries: int = setting(
        1,
        "after a transient failure (500/502/503/504, a reset or connect error) or a short "
        "429, attempts on the same target before failing over (providers and routes may "
        "override)",
        live=True,
        minimum=0,
    )
    retry_after_wait_s: float = setting(
        2.0,
        "a 429 whose Retry-After is at most this is waited out on the same target (if the "
        "deadline allows and same_target_retries are left); longer: fail over at once",
        live=True,
        minimum=0,
    )
    budget: BudgetSettings = field(default_factory=BudgetSettings, metadata=INLINE)
    deadline_s: float | None = setting(
        None,
        "default deadline of every route; unset: only each attempt's total_s",
        live=True,
        positive=True,
    )
    deadline_header: str = setting(
        "x-turnout-deadline-ms",
        "a client header that can shorten the deadline (milliseconds)",
        live=True,
        lower=True,
        or_default=True,
    )
    panic: bool = setting(
        True,
        "when every candidate is open or throttled, one attempt on the least-bad one",
        live=True,
    )
    stream_malformed_max: int = setting(
        3,
        "malformed events a stream may have after its first byte, each dropped; one more ends "
        "it as a provider failure (0: the first does)",
        live=True,
        minimum=0,
    )
    continuation: bool = setting(
        True,
        "a stream that fails after its first byte is completed on the next candidate inside "
        "the same client stream (prefill where the target supports it, else a regenerated "
        "answer spliced if it begins with the delivered text); routes may opt out",
        live=True,
    )


_RESILIENCE = ResilienceConfig()


@dataclass(frozen=True, slots=True)
class RouteConfig:
    alias: str
    candidates: tuple[str, ...]
    policy: str = "priority"  # its name, for headers, logs and traces
    policy_spec: Any = None  # the YAML as written: what a reload compares
    # Fresh policies of this spec, decoded (and built once, as its check) by the loader.
    make_policy: PolicyFactory = field(default=DEFAULT_POLICY_FACTORY, compare=False, repr=False)
    max_attempts: int = setting(
        _RESILIENCE.max_attempts,
        "targets tried per request (default: resilience.max_attempts)",
        live=True,
        positive=True,
    )
    timeouts: Mapping[str, Any] = field(default_factory=dict)  # overrides the provider's
    deadline_s: float | None = setting(
        _RESILIENCE.deadline_s,
        "one deadline for the whole request (default: resilience.deadline_s)",
        live=True,
        positive=True,
    )
    same_target_retries: int | None = setting(
        None,
        "same-target retries on this route's targets (default: the provider's, else "
        "resilience.same_target_retries)",
        live=True,
        minimum=0,
    )
    retry_after_wait_s: float | None = setting(
        None,
        "longest Retry-After waited out on this route (default: the provider's, else "
        "resilience.retry_after_wait_s)",
        live=True,
        minimum=0,
    )
    continuation: bool = setting(
        _RESILIENCE.continuation,
        "complete a stream cut after its first byte on the next candidate (default: "
        "resilience.continuation)",
        live=True,
    )
    translation: str = setting(
        "lossy",
        "a candidate of another wire format: `lossy` takes it, naming what is dropped; "
        "`strict` skips it when its translation would drop anything",
        live=True,
        choices=TRANSLATIONS,
    )
    hedge: Hedge | None = None
    match: RouteMatch = field(default_factory=RouteMatch)
    debug: bool = setting(
        False,
        "every response carries an x-turnout-route header explaining the routing",
        live=True,
    )
    key: str = ""  # unique per route: alias#n (several routes may share an alias)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The listening socket and the admin surface. What the socket and the server's
    lifecycle took at start (host, port, connection limits, grace, the poller) needs a
    restart; what each request reads applies live."""

    host: str = setting("127.0.0.1", "address to bind (0.0.0.0 in a container)", live=False)
    port: int = setting(
        8080, "port to bind (0 = any free port)", live=False, minimum=0, maximum=65535
    )
    admin_port: int | None = setting(
        None,
        "serve /admin/*, /ui and /metrics on a listener of their own on this port (0 = any "
        "free port), and not on `port`; unset: on the main listener. A reload cannot move it",
        live=False,
        minimum=0,
        maximum=65535,
    )
    admin_host: str = setting(
        "127.0.0.1",
        "address of the admin listener (with admin_port); beyond loopback it needs admin_token",
        live=False,
    )
    max_body_bytes: int = setting(
        DEFAULT_MAX_BODY_BYTES, "larger request bodies get 413", live=True, positive=True
    )
    config_poll_s: float = setting(
        1.0,
        "how often the config file is checked for changes (reload); 0 turns it off",
        live=False,
        minimum=0,
    )
    grace_s: float = setting(
        10.0,
        "on SIGTERM, how long requests in flight may take before they are ended",
        live=False,
        positive=True,
    )
    admin_token: str = setting(
        "",
        "when set, /admin/* and /ui need `Authorization: Bearer <token>` "
        "(e.g. ${TURNOUT_ADMIN_TOKEN})",
        live=True,
        secret=True,
    )
    metrics_need_token: bool = setting(
        False,
        "with admin_token set, /metrics needs it too (Prometheus: `authorization: {credentials: "
        "...}`)",
        live=True,
    )
    allow_anonymous: bool = setting(
        False,
        "serve /v1/* without client keys on an address beyond loopback (without it, and "
        "without `clients`, such a bind is refused at start)",
        live=True,
    )
    debug_header: bool = setting(
        True,
        "honour a caller's `x-turnout-debug: route` (the answer then explains the routing "
        "decision: target ids, scores, exclusions); false: only routes with `debug: true` "
        "explain",
        live=True,
    )
    header_timeout_s: float = setting(
        10.0,
        "a request's headers must arrive within this, from its first byte (else 408 and the "
        "connection is closed)",
        live=False,
        positive=True,
    )
    body_timeout_s: float = setting(
        60.0,
        "a request's whole body must arrive within this once its headers are in (else 408)",
        live=True,
        positive=True,
    )
    max_connections: int = setting(
        1000,
        "open client connections at most; a new one above it gets 503 with Retry-After and "
        "is closed",
        live=False,
        positive=True,
    )
    # Each body in flight holds ~3x its size in memory (the body, its parsed form, an
    # attempt's copy); one request is always admitted.
    max_body_bytes_in_flight: int = setting(
        2 * DEFAULT_MAX_BODY_BYTES,
        "request-body bytes all requests in flight may hold together; above it a new request "
        "gets 503 with Retry-After (one request alone is always admitted)",
        live=True,
        positive=True,
    )

    @property
    def admin_listener(self) -> tuple[str, int] | None:
        """(host, port) of the admin plane's own listener; None: it shares the main one."""
        return None if self.admin_port is None else (self.admin_host, self.admin_port)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Target health: where it is kept, the error window, the breaker. The store is built
    once, at start, with these settings: every key needs a restart."""

    store: str = setting(
        "memory",
        "memory: this process only; redis: shared by every replica",
        live=False,
        choices=STORES,
    )
    fleet: FleetSettings = field(default_factory=FleetSettings, metadata=INLINE)
    settings: HealthSettings = field(default_factory=HealthSettings, metadata=INLINE)


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Traces, metrics and logs: the tracer, exporters and log format are set up at start,
    so every key needs a restart."""

    traces: TraceSettings = field(default_factory=TraceSettings, metadata=INLINE)
    log_format: str = setting(
        "text",
        "json: one JSON object per line with trace_id/span_id (TURNOUT_LOG_FORMAT overrides)",
        live=False,
        choices=LOG_FORMATS,
    )
    recent_traces: int = setting(
        0,
        "traces kept in memory for the /ui dashboard (the demo keeps 200); 0: none, and then "
        "no span is recorded unless an exporter is set",
        live=False,
        minimum=0,
    )


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
    clients: Mapping[str, ClientConfig] = field(default_factory=dict)  # key digest -> client
    _by_alias: Mapping[str, tuple[RouteConfig, ...]] = field(init=False, repr=False, compare=False)
    # Targets whose provider speaks another wire format than OpenAI's clients (translated).
    foreign: frozenset[str] = field(init=False, repr=False, compare=False)
    # The same for each client format (CLIENT_FORMATS): foreign_to["openai"] is `foreign`.
    foreign_to: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_alias: dict[str, list[RouteConfig]] = {}
        for r in self.routes:
            by_alias.setdefault(r.alias, []).append(r)
        object.__setattr__(self, "_by_alias", {a: tuple(rs) for a, rs in by_alias.items()})
        formats = {name: p.format for name, p in self.providers.items()}
        foreign = {
            t.id for t in self.targets.values() if formats.get(t.provider, "openai") != "openai"
        }
        object.__setattr__(self, "foreign", frozenset(foreign))
        by_client = {
            client: frozenset(
                t.id for t in self.targets.values() if formats.get(t.provider, "openai") != client
            )
            for client in CLIENT_FORMATS
        }
        object.__setattr__(self, "foreign_to", by_client)

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
