"""A JSON Schema (draft 2020-12) of the config file, for editors: `turnout schema`.

It mirrors the strict decoders (`gateway.config.load`, `.routes`, `policies.loading`,
`policies.tasks`): the same keys (`additionalProperties: false` wherever an unknown key is an
error), types, enums and ranges, with the defaults of the config dataclasses and the words of
docs/configuration.md. The policy parts' params come from their dataclasses
(`gateway.config.schema_policies`). tests/unit/test_schema.py checks every section's keys against
the decoders' own "known keys" lists, so a key added to a decoder without the schema fails.

It describes the file as written, before `${VAR}` expansion: a number may also be a string
holding a reference (`port: ${PORT:-8080}`), checked only once expanded. What the loader
checks across sections (a target's provider exists, aliases are unique...) is left to
`turnout check`. Deliberately stricter than the loader: numbers written as quoted strings
("8080"), upper-case enum values, empty scalars (`port:` with no value) and an `otlp_protocol`
other than http/protobuf or grpc (the loader reads any other as HTTP) are flagged.
"""

from __future__ import annotations

from typing import Any

from gateway.config.load import FORMATS, REDIS_SCHEMES, STORES, SUPPORTS
from gateway.config.model import (
    DEFAULT_MAX_BODY_BYTES,
    HealthConfig,
    ProviderConfig,
    ResilienceConfig,
    RouteConfig,
    ServerConfig,
    TelemetryConfig,
    Timeouts,
)
from gateway.config.routes import TIMEOUT_KEYS
from gateway.config.schema_policies import (
    ENV_DEF,
    ENV_REF,
    ENV_STRING,
    OBJECT_OR_NULL,
    Schema,
    boolean,
    choice,
    env_or,
    integer,
    number,
    policy_defs,
    positive,
    ref,
    section,
    string,
    strings,
    tasks_defs,
)
from gateway.telemetry.tracing import EXPORTERS, TraceSettings
from health.settings import BreakerSettings, HealthSettings, ThrottleSettings

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _server() -> Schema:
    d = ServerConfig()
    return section(
        "the listening socket and the admin surface",
        {
            "host": string("address to bind (0.0.0.0 in a container)", d.host),
            "port": integer("port to bind (0 = any free port)", d.port, minimum=0, maximum=65535),
            "max_body_bytes": integer(
                "larger request bodies get 413", DEFAULT_MAX_BODY_BYTES, minimum=1
            ),
            "grace_s": positive(
                "on SIGTERM, how long requests in flight may take before they are ended",
                d.grace_s,
            ),
            "admin_token": string(
                "when set, /admin/* and /ui need `Authorization: Bearer <token>` "
                "(e.g. ${TURNOUT_ADMIN_TOKEN})"
            ),
            "debug_header": boolean(
                "honour a caller's `x-turnout-debug: route` (the answer then explains the "
                "routing decision: target ids, scores, exclusions); false: only routes with "
                "`debug: true` explain",
                d.debug_header,
            ),
            "config_poll_s": number(
                "how often the config file is checked for changes (reload); 0 turns it off",
                d.config_poll_s,
            ),
            "header_timeout_s": positive(
                "a request's headers must arrive within this, from its first byte (else 408 "
                "and the connection is closed)",
                d.header_timeout_s,
            ),
            "body_timeout_s": positive(
                "a request's whole body must arrive within this once its headers are in (else 408)",
                d.body_timeout_s,
            ),
            "max_body_bytes_in_flight": integer(
                "request-body bytes all requests in flight may hold together; above it a new "
                "request gets 503 with Retry-After (one request alone is always admitted)",
                d.max_body_bytes_in_flight,
                minimum=1,
            ),
            "max_connections": integer(
                "open client connections at most; a new one above it gets 503 with Retry-After "
                "and is closed",
                d.max_connections,
                minimum=1,
            ),
        },
    )


def _health() -> Schema:
    d, dh, db, dt = HealthConfig(), HealthSettings(), BreakerSettings(), ThrottleSettings()
    schemes = "|".join(s.replace("+", r"\+") for s in REDIS_SCHEMES)
    breaker = section(
        "the per-target circuit breaker",
        {
            "consecutive_failures": integer(
                "trip after this many provider failures in a row",
                db.consecutive_failures,
                minimum=1,
            ),
            "failure_rate": positive(
                "or when the window's failure rate reaches this (with min_calls)", db.failure_rate
            ),
            "min_calls": integer(
                "calls in the window needed before failure_rate counts", db.min_calls, minimum=1
            ),
            "open_s": positive("open time; doubles on each consecutive trip", db.open_s),
            "open_max_s": positive("cap of the open time", db.open_max_s),
            "jitter": number("+- fraction applied to open times", db.jitter),
            "half_open_successes": integer(
                "probe successes needed to close; one probe at a time",
                db.half_open_successes,
                minimum=1,
            ),
            "misconfigured_open_s": positive(
                "how long a 401/403 keeps a target aside", db.misconfigured_open_s
            ),
        },
    )
    throttle = section(
        "how long a 429 keeps a target aside",
        {
            "default_s": positive(
                "without a usable Retry-After: first wait; doubles on each 429", dt.default_s
            ),
            "max_s": positive("cap of that wait", dt.max_s),
            "retry_after_max_s": positive(
                "cap of a provider's Retry-After (a huge one does not bench a target for long)",
                dt.retry_after_max_s,
            ),
        },
    )
    schema = section(
        "target health: where it is kept, the error window, the breaker",
        {
            "store": choice(
                "memory: this process only; redis: shared by every replica", d.store, STORES
            ),
            "redis_url": string(
                "required when store is redis: redis://[:pw@]host:port/db, rediss://, unix://, "
                "redis+sentinel://, redis+cluster:// (TURNOUT_REDIS_URL, when set, wins)",
                pattern=f"^(?:$|(?:{schemes})://)|{ENV_REF}",
            ),
            "key_prefix": string(
                "namespace for keys and the pub/sub channel (several fleets, one Redis)",
                d.key_prefix,
            ),
            "sync_period_s": positive("reconciliation period with Redis", d.sync_period_s),
            "redis_timeout_s": positive(
                "socket timeout of the background Redis client", d.redis_timeout_s
            ),
            "probe_lock_s": positive(
                "longest hold of the fleet-wide half-open probe lock", d.probe_lock_s
            ),
            "pubsub": boolean(
                "push events through pub/sub as well as keys; false: reconciliation alone",
                d.pubsub,
            ),
            "window_s": positive("the sliding error-rate window", dh.window_s),
            "bucket_s": positive("bucket width of the window (<= window_s)", dh.bucket_s),
            "ewma_tau_s": positive(
                "decay time constant of the latency/TTFT peak-EWMA", dh.ewma_tau_s
            ),
            "breaker": breaker,
            "throttle": throttle,
        },
    )
    schema["if"] = {"properties": {"store": {"const": "redis"}}, "required": ["store"]}
    schema["then"] = {"required": ["redis_url"]}
    return schema


_TIMEOUT_DOCS = {
    "connect_s": "TCP (+TLS) connect",
    "headers_s": "response headers of a streaming request",
    "first_token_s": "first output token of a stream (a non-streaming answer gets total_s)",
    "idle_s": "longest silence between two streamed chunks",
    "total_s": "a whole attempt, and a non-streaming answer's wait; re-sent only within a deadline",
}


def _timeouts(description: str, defaults: Timeouts | None) -> Schema:
    return section(
        description,
        {
            key: positive(
                f"seconds: {_TIMEOUT_DOCS.get(key, key)}",
                None if defaults is None else getattr(defaults, key),
            )
            for key in TIMEOUT_KEYS
        },
    )


def _provider() -> Schema:
    d = ProviderConfig(name="", base_url="")
    return section(
        "an OpenAI-compatible upstream",
        {
            "base_url": string(
                "the OpenAI-compatible base URL, including /v1",
                pattern=f"^https?://[^/?#]+|{ENV_REF}",
            ),
            "api_key": string("sent as `Authorization: Bearer ...`; empty sends none"),
            "format": choice("wire format (only openai today)", d.format, FORMATS),
            "headers": strings("extra headers for every request (e.g. Azure's api-key)"),
            "query": strings(
                "query parameters for every request (e.g. Azure's api-version); never shown "
                "in /admin/config, spans or logs"
            ),
            "max_connections": integer(
                "connection pool size to this provider", d.max_connections, minimum=1
            ),
            "timeouts": _timeouts("per-phase upstream timeouts, in seconds", Timeouts()),
        },
        "base_url",
    )


def _target() -> Schema:
    return section(
        "one model on one provider (routes may also write `model@provider`)",
        {
            "provider": string("a key of `providers`", minLength=1),
            "model": string(
                "the provider's model name, sent upstream in place of the alias", minLength=1
            ),
            "context_window": integer("tokens", minimum=1),
            "price": section(
                "US dollars per million tokens",
                {
                    "input_per_mtok": number("US dollars per million input tokens"),
                    "output_per_mtok": number("US dollars per million output tokens"),
                },
            ),
            "supports": {
                "type": ["array", "null"],
                "description": "features the target supports (for the capability filter)",
                "default": [],
                "items": env_or({"enum": list(SUPPORTS)}),
            },
            "capabilities": {
                "type": OBJECT_OR_NULL,
                "description": "task category -> score in [0, 1] (for policies)",
                "additionalProperties": env_or({"type": "number"}),
            },
            "weight": number("static weight (for policies)", 1.0),
        },
        "provider",
        "model",
    )


def _resilience() -> Schema:
    d = ResilienceConfig()
    return section(
        "the attempt loop: which candidate next, how long to wait, when to stop",
        {
            "max_attempts": integer(
                "attempts per request, each on a different target (routes may override)",
                d.max_attempts,
                minimum=1,
            ),
            "backoff_base_s": positive("full-jitter backoff base", d.backoff_base_s),
            "backoff_cap_s": positive("full-jitter backoff cap", d.backoff_cap_s),
            "budget_ratio": number(
                "retries and hedges may be at most this share of requests (+ the floor)",
                d.budget_ratio,
                minimum=0,
            ),
            "budget_min_retries": integer(
                "retries always allowed per budget window", d.budget_min_retries, minimum=0
            ),
            "budget_window_s": positive("the retry budget's window", d.budget_window_s),
            "deadline_s": positive(
                "default deadline of every route; unset: only each attempt's total_s"
            ),
            "deadline_header": string(
                "a client header that can shorten the deadline (milliseconds)", d.deadline_header
            ),
            "panic": boolean(
                "when every candidate is open or throttled, one attempt on the least-bad one",
                d.panic,
            ),
        },
    )


def _route() -> Schema:
    d = RouteConfig(alias="", candidates=())
    hedge = section(
        "race the next candidate when the first token is late",
        {
            "after": {
                "description": "seconds, or p95 (the target's p95 time to first token)",
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"const": "p95"},
                    ENV_STRING,
                ],
            },
            "min_s": number("with after: p95, never hedge sooner than this", 0.0),
        },
        "after",
    )
    match = section(
        "pick this route among those sharing its alias by request metadata (all must hold)",
        {
            "headers": strings("request header -> required value (names case-insensitive)"),
            "metadata": strings("the body's metadata key -> required value"),
            "user": string("the body's user"),
        },
    )
    return section(
        "a model name clients may send, and its candidate targets",
        {
            "alias": string("what clients send as `model`", minLength=1),
            "candidates": {
                "type": "array",
                "description": "target ids or model@provider, in preference order",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "minLength": 1},
            },
            "policy": ref("policy"),
            "max_attempts": integer(
                "upstream attempts per request (default: resilience.max_attempts)", minimum=1
            ),
            "timeouts": _timeouts("per-phase overrides of the providers' timeouts", None),
            "deadline_s": positive(
                "one deadline for the whole request (default: resilience.deadline_s)"
            ),
            "hedge": hedge,
            "match": match,
            "debug": boolean(
                "every response carries an x-turnout-route header explaining the routing",
                d.debug,
            ),
        },
        "alias",
        "candidates",
    )


def _telemetry() -> Schema:
    d, dt = TraceSettings(), TelemetryConfig()
    protocols = ("http/protobuf", "grpc")
    return section(
        "traces, metrics and logs (docs/observability.md)",
        {
            "traces_exporter": choice(
                "none, console or otlp; OTEL_TRACES_EXPORTER overrides", d.exporter, EXPORTERS
            ),
            "otlp_endpoint": string(
                "e.g. http://collector:4318; else OTEL_EXPORTER_OTLP_ENDPOINT or the default"
            ),
            "otlp_protocol": choice(
                "grpc needs opentelemetry-exporter-otlp-proto-grpc; "
                "OTEL_EXPORTER_OTLP_PROTOCOL overrides",
                d.otlp_protocol,
                protocols,
            ),
            "metrics_otlp": boolean("also push metrics by OTLP every 15 s", d.metrics_otlp),
            "sample_ratio": number(
                "head sampling (parent-based); OTEL_TRACES_SAMPLER_ARG overrides",
                d.sample_ratio,
                minimum=0,
                maximum=1,
            ),
            "service_name": string("the service.name resource attribute", d.service_name),
            "record_content": boolean(
                "reserved: prompts and completions are never recorded yet", d.record_content
            ),
            "recent_traces": integer(
                "traces kept in memory for the /ui dashboard", dt.recent_traces, minimum=0
            ),
            "log_format": choice(
                "json: one JSON object per line with trace_id/span_id "
                "(TURNOUT_LOG_FORMAT overrides)",
                dt.log_format,
                ("text", "json"),
            ),
        },
    )


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (`docs/config.schema.json` is this, as JSON)."""
    return {
        "$schema": DRAFT,
        "title": "Turnout configuration",
        "description": "An LLM gateway's config file; reference: docs/configuration.md. "
        "Any string may use ${VAR} or ${VAR:-default}.",
        "type": "object",
        "additionalProperties": False,
        "required": ["providers", "routes"],
        "properties": {
            "server": _server(),
            "health": _health(),
            "providers": {
                "type": "object",
                "description": "upstreams by name (at least one)",
                "minProperties": 1,
                "additionalProperties": _provider(),
            },
            "targets": {
                "type": OBJECT_OR_NULL,
                "description": "targets by id (a route may also name `model@provider`)",
                "additionalProperties": _target(),
            },
            "resilience": _resilience(),
            "telemetry": _telemetry(),
            "tasks": ref("tasks"),
            "routes": {
                "type": "array",
                "description": "routes, the first matching one per alias (at least one)",
                "minItems": 1,
                "items": _route(),
            },
        },
        "$defs": {"env": ENV_DEF, **policy_defs(), **tasks_defs()},
    }
