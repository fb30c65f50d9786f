"""Build a `Config` from YAML: parse, expand `${VAR}`, decode strictly, cross-check references."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.config.clients import OVERRIDES, decode_clients
from gateway.config.decode import ConfigError, ConfigIssue, Issues, Section, join
from gateway.config.expand import expand
from gateway.config.model import (
    Config,
    HealthConfig,
    ProviderConfig,
    ResilienceConfig,
    ServerConfig,
    TargetConfig,
    TelemetryConfig,
)
from gateway.config.routes import decode_routes
from gateway.config.sections import decode_fields, decode_section
from health.declared import entry
from health.settings import REDIS_SCHEMES, FleetSettings, HealthSettings
from policies.loading import build_task_rules
from policies.tasks import DEFAULT_TASK_RULES
from policies.types import Candidate, Price

SUPPORTS = ("tools", "vision", "json", "embeddings", "prefill")
_CANDIDATE = Candidate("", "", "")  # a target's profile defaults


def load_file(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file. Raises ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([ConfigIssue("", f"cannot read config file: {reason}")], str(p)) from None
    return load_text(text, source=str(p), env=env)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (a silent last-one-wins hides typos)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_text(
    text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None
) -> Config:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        issue = ConfigIssue("", f"YAML syntax error: {where}{problem}", line, column)
        raise ConfigError([issue], source) from None
    return load_data(data, source=source, env=os.environ if env is None else env)


def load_data(data: object, *, source: str = "<memory>", env: Mapping[str, str]) -> Config:
    issues = Issues()
    data = _expand_tree(data, "", env, issues)
    root = Section(data, "", issues)
    server = decode_section(root.sub("server"), ServerConfig)
    health = _health(root.sub("health"), env.get("TURNOUT_REDIS_URL", ""))
    providers = _providers(root.sub("providers"))
    targets = _targets(root.sub("targets"), providers)
    resilience = decode_section(root.sub("resilience"), ResilienceConfig)
    telemetry = decode_section(root.sub("telemetry"), TelemetryConfig)
    tasks, task_problems = build_task_rules(root.raw("tasks"), "tasks")
    for tpath, message in task_problems:
        issues.add(tpath, message)
    routes = decode_routes(root.raw("routes"), providers, targets, issues, resilience)
    aliases = frozenset(r.alias for r in routes)
    steering = {
        **OVERRIDES,
        "deadline": (resilience.deadline_header,),
        "metadata": tuple({h for r in routes for h in r.match.headers}),
    }
    clients = decode_clients(root.sub("clients"), env, aliases, issues, steering)
    root.done()
    if root.ok and not root.data.get("providers"):
        issues.add("providers", "at least one provider is required")
    if root.ok and not root.data.get("routes"):
        issues.add("routes", "at least one route is required")
    if issues.items:
        raise ConfigError(issues.items, source)
    return Config(
        server,
        health,
        MappingProxyType(providers),
        MappingProxyType(targets),
        routes,
        source,
        resilience,
        telemetry,
        tasks or DEFAULT_TASK_RULES,
        clients,
    )


def _expand_tree(node: object, path: str, env: Mapping[str, str], issues: Issues) -> object:
    if isinstance(node, str):
        try:
            return expand(node, env)
        except ValueError as exc:  # UnsetVariable or a malformed reference
            issues.add(path, str(exc))
            return ""
    if isinstance(node, Mapping):
        return {k: _expand_tree(v, join(path, str(k)), env, issues) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, join(path, i), env, issues) for i, v in enumerate(node)]
    return node


def _health(s: Section, env_redis_url: str) -> HealthConfig:
    values = decode_fields(s, HealthConfig)
    fleet: FleetSettings = values["fleet"]
    url_path = join(s.path, entry(FleetSettings, "url").key)
    if env_redis_url:
        # TURNOUT_REDIS_URL alone turns the fleet store on (a sidecar's usual wiring).
        values["store"], fleet = "redis", replace(fleet, url=env_redis_url)
    if values["store"] == "redis" and not fleet.url:
        s.issues.add(url_path, "required when store is 'redis'")
    elif fleet.url and urlsplit(fleet.url).scheme not in REDIS_SCHEMES:
        s.issues.add(
            url_path,
            f"must start with one of {', '.join(REDIS_SCHEMES)}:// (got {urlsplit(fleet.url).scheme or 'no scheme'})",
        )
    settings: HealthSettings = values["settings"]
    if settings.bucket_s > settings.window_s:
        s.issues.add(
            join(s.path, entry(HealthSettings, "bucket_s").key), "must not exceed window_s"
        )
    s.done()
    return HealthConfig(**(values | {"fleet": fleet}))


def _providers(s: Section) -> dict[str, ProviderConfig]:
    out: dict[str, ProviderConfig] = {}
    for name in list(s.data):
        p = s.sub(str(name))
        if not p.ok:
            continue
        base_url = p.get("base_url", str, "")
        path = join(p.path, "base_url")
        if not base_url:
            p.issues.add(path, "required")
        else:
            parts = urlsplit(base_url)
            shown = "a URL with credentials" if "@" in parts.netloc else repr(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                p.issues.add(path, f"must be an http(s) URL, got {shown}")
            elif parts.query or parts.fragment:
                p.issues.add(
                    path,
                    "must not carry a query or fragment (the endpoint path is appended to "
                    "it): put query parameters in `query:`",
                )
            elif "@" in parts.netloc and p.raw("api_key"):
                p.issues.add(
                    path,
                    "carries credentials (user:password@) and api_key is set: both would be "
                    "sent as Authorization; keep one",
                )
        headers_s = p.sub("headers")
        headers = {
            str(k): headers_s.coerce(v, str, join(headers_s.path, str(k)), "")
            for k, v in headers_s.data.items()
        }
        query_s = p.sub("query")
        query = {
            str(k): query_s.coerce(v, str, join(query_s.path, str(k)), "")
            for k, v in query_s.data.items()
        }
        out[str(name)] = ProviderConfig(
            name=str(name),
            base_url=base_url.rstrip("/"),
            headers=MappingProxyType(headers),
            query=MappingProxyType(query),
            **decode_fields(p, ProviderConfig),
        )
        p.done()
    return out


def _price(s: Section) -> Price | None:
    if not s.data:
        s.done()
        return None
    d = Price()
    price = Price(
        input_per_mtok=s.get("input_per_mtok", float, d.input_per_mtok),
        output_per_mtok=s.get("output_per_mtok", float, d.output_per_mtok),
    )
    s.done()
    return price


def _targets(s: Section, providers: Mapping[str, ProviderConfig]) -> dict[str, TargetConfig]:
    out: dict[str, TargetConfig] = {}
    for tid in list(s.data):
        t = s.sub(str(tid))
        if not t.ok:
            continue
        provider = t.get("provider", str, "")
        model = t.get("model", str, "")
        if not provider:
            t.issues.add(join(t.path, "provider"), "required")
        elif provider not in providers:
            t.issues.add(join(t.path, "provider"), f"unknown provider {provider!r}")
        if not model:
            t.issues.add(join(t.path, "model"), "required")
        caps_s = t.sub("capabilities")
        caps = {
            str(k): caps_s.coerce(v, float, join(caps_s.path, str(k)), 0.0)
            for k, v in caps_s.data.items()
        }
        supports_raw = t.raw("supports") or []
        supports: set[str] = set()
        if not isinstance(supports_raw, list):
            t.issues.add(join(t.path, "supports"), "expected a list")
        else:
            for i, item in enumerate(supports_raw):
                if item not in SUPPORTS:
                    t.issues.add(
                        join(join(t.path, "supports"), i),
                        f"unknown feature {item!r} (known: {', '.join(SUPPORTS)})",
                    )
                else:
                    supports.add(item)
        window = t.raw("context_window")
        context_window = None if window is None else t.positive("context_window", int, 0) or None
        profile = Candidate(
            target_id=str(tid),
            provider=provider,
            model=model,
            context_window=context_window,
            price=_price(t.sub("price")),
            weight=t.get("weight", float, _CANDIDATE.weight),
            capabilities=MappingProxyType(caps),
            supports=frozenset(supports),
        )
        out[str(tid)] = TargetConfig(str(tid), provider, model, profile)
        t.done()
    return out
