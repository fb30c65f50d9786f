"""A JSON Schema (draft 2020-12) of the config file, for editors: `turnout schema`.

It mirrors the strict decoders (`gateway.config.load`, `.routes`, `policies.loading`,
`policies.tasks`): the same keys (`additionalProperties: false` wherever an unknown key is an
error), types, enums and ranges. The sections of declared settings (server, health,
resilience, telemetry, timeouts, a route's overrides) are generated from their declarations
(`gateway.config.schema_fields`): type, default, description and range are never written
here. The policy parts' params come from their dataclasses (`gateway.config.schema_policies`; the building blocks are `gateway.config.schema_types`). tests/unit/test_schema.py checks every section's keys against
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

from gateway.config.clients import FORBIDDEN_OVERRIDES, OVERRIDES, ClientLimits
from gateway.config.load import SUPPORTS
from gateway.config.model import (
    HealthConfig,
    ProviderConfig,
    ResilienceConfig,
    RouteConfig,
    ServerConfig,
    TelemetryConfig,
    Timeouts,
)
from gateway.config.schema_fields import properties, section_of, setting_schema
from gateway.config.schema_policies import policy_defs, tasks_defs
from gateway.config.schema_types import (
    ENV_DEF,
    ENV_REF,
    ENV_STRING,
    OBJECT_OR_NULL,
    Schema,
    env_or,
    integer,
    number,
    ref,
    section,
    string,
    strings,
)
from health.declared import entry
from health.settings import REDIS_SCHEMES

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _health() -> Schema:
    schemes = "|".join(s.replace("+", r"\+") for s in REDIS_SCHEMES)
    schema = section_of(
        HealthConfig,
        "target health: where it is kept, the error window, the breaker",
        redis_url={"pattern": f"^(?:$|(?:{schemes})://)|{ENV_REF}"},
    )
    schema["if"] = {"properties": {"store": {"const": "redis"}}, "required": ["store"]}
    schema["then"] = {"required": ["redis_url"]}
    return schema


def _provider() -> Schema:
    return section(
        "an OpenAI-compatible upstream",
        {
            "base_url": string(
                "the OpenAI-compatible base URL, including /v1",
                pattern=f"^https?://[^/?#]+|{ENV_REF}",
            ),
            **properties(ProviderConfig),
            "headers": strings("extra headers for every request (e.g. Azure's api-key)"),
            "query": strings(
                "query parameters for every request (e.g. Azure's api-version); never shown "
                "in /admin/config, spans or logs"
            ),
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


def _route() -> Schema:
    max_attempts = entry(RouteConfig, "max_attempts")
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
            "max_attempts": setting_schema(max_attempts, with_default=False),
            "timeouts": section(
                "per-phase overrides of the providers' timeouts",
                properties(Timeouts, with_default=False),
            ),
            "deadline_s": setting_schema(entry(RouteConfig, "deadline_s")),
            "same_target_retries": setting_schema(entry(RouteConfig, "same_target_retries")),
            "retry_after_wait_s": setting_schema(entry(RouteConfig, "retry_after_wait_s")),
            "continuation": setting_schema(entry(RouteConfig, "continuation"), with_default=False),
            "hedge": hedge,
            "match": match,
            "debug": setting_schema(entry(RouteConfig, "debug")),
            "translation": setting_schema(entry(RouteConfig, "translation")),
        },
        "alias",
        "candidates",
    )


def _client() -> dict[str, Any]:
    names = {"type": "array", "items": {"type": "string"}}
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "key_sha256": {
                "type": "string",
                "pattern": "^[0-9a-fA-F]{64}$",
                "description": "the key's SHA-256 in hex (turnout key new)",
            },
            "key_env": {
                "type": "string",
                "description": "an environment variable holding the key",
            },
            "routes": {**names, "description": "the aliases this key may use (default: all)"},
            "overrides": {
                "type": "array",
                "items": {"enum": list(OVERRIDES)},
                "description": "what this key may steer by request headers (default: none)",
            },
            "forbidden_overrides": {
                "enum": list(FORBIDDEN_OVERRIDES),
                "description": "an override header this key may not send: ignored (default) "
                "or refused with a 403",
            },
            "labels": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "put on the request's span",
            },
            "limits": section_of(
                ClientLimits,
                "rate limits and spend budgets, shared by the fleet (docs/security.md)",
            ),
        },
    }


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
            "server": section_of(ServerConfig, "the listening socket and the admin surface"),
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
            "resilience": section_of(
                ResilienceConfig,
                "the attempt loop: which candidate next, how long to wait, when to stop",
            ),
            "telemetry": section_of(
                TelemetryConfig, "traces, metrics and logs (docs/observability.md)"
            ),
            "tasks": ref("tasks"),
            "clients": {
                "type": OBJECT_OR_NULL,
                "description": "client keys by name (docs/configuration.md); none: anyone "
                "who can reach /v1/* may call it",
                "additionalProperties": _client(),
            },
            "routes": {
                "type": "array",
                "description": "routes, the first matching one per alias (at least one)",
                "minItems": 1,
                "items": _route(),
            },
        },
        "$defs": {"env": ENV_DEF, **policy_defs(), **tasks_defs()},
    }
