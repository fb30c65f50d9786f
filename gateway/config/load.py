"""Build a `Config` from YAML: parse, expand `${VAR}`, decode strictly, cross-check references."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.config.decode import ConfigError, ConfigIssue, Issues, Section, join
from gateway.config.expand import expand
from gateway.config.model import (
    DEFAULT_MAX_BODY_BYTES,
    Config,
    HealthConfig,
    ProviderConfig,
    ServerConfig,
    TargetConfig,
    TelemetryConfig,
    Timeouts,
)
from gateway.config.routes import decode_resilience, decode_routes, decode_timeouts
from gateway.telemetry.tracing import EXPORTERS, TraceSettings
from health.settings import BreakerSettings, HealthSettings, ThrottleSettings
from policies.loading import build_task_rules
from policies.tasks import DEFAULT_TASK_RULES
from policies.types import Candidate, Price

FORMATS = ("openai",)
STORES = ("memory", "redis")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
SUPPORTS = ("tools", "vision", "json", "embeddings")


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
    server = _server(root.sub("server"))
    health = _health(root.sub("health"), env.get("TURNOUT_REDIS_URL", ""))
    providers = _providers(root.sub("providers"))
    targets = _targets(root.sub("targets"), providers)
    resilience = decode_resilience(root.sub("resilience"))
    telemetry = _telemetry(root.sub("telemetry"))
    tasks, task_problems = build_task_rules(root.raw("tasks"), "tasks")
    for tpath, message in task_problems:
        issues.add(tpath, message)
    routes = decode_routes(root.raw("routes"), providers, targets, issues, resilience)
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


def _server(s: Section) -> ServerConfig:
    d = ServerConfig()
    port = s.get("port", int, d.port)
    if not 0 <= port <= 65535:
        s.issues.add(join(s.path, "port"), f"must be between 0 and 65535, got {port}")
    cfg = ServerConfig(
        host=s.get("host", str, d.host),
        port=port,
        max_body_bytes=s.positive("max_body_bytes", int, DEFAULT_MAX_BODY_BYTES),
        config_poll_s=max(0.0, s.get("config_poll_s", float, d.config_poll_s)),
        grace_s=s.positive("grace_s", float, d.grace_s),
        admin_token=s.get("admin_token", str, ""),
        debug_header=s.get("debug_header", bool, d.debug_header),
        header_timeout_s=s.positive("header_timeout_s", float, d.header_timeout_s),
        body_timeout_s=s.positive("body_timeout_s", float, d.body_timeout_s),
        max_connections=s.positive("max_connections", int, d.max_connections),
        max_body_bytes_in_flight=s.positive(
            "max_body_bytes_in_flight", int, d.max_body_bytes_in_flight
        ),
    )
    s.done()
    return cfg


def _telemetry(s: Section) -> TelemetryConfig:
    d = TraceSettings()
    exporter = s.get("traces_exporter", str, d.exporter).lower()
    if exporter not in EXPORTERS:
        s.issues.add(join(s.path, "traces_exporter"), f"must be one of {', '.join(EXPORTERS)}")
    ratio = s.get("sample_ratio", float, d.sample_ratio)
    if not 0.0 <= ratio <= 1.0:
        s.issues.add(join(s.path, "sample_ratio"), "must be between 0 and 1")
    log_format = s.get("log_format", str, "text")
    if log_format not in ("text", "json"):
        s.issues.add(join(s.path, "log_format"), "must be text or json")
    recent = s.get("recent_traces", int, 0)
    if recent < 0:
        s.issues.add(join(s.path, "recent_traces"), "must be 0 or more")
    traces = TraceSettings(
        service_name=s.get("service_name", str, d.service_name),
        exporter=exporter,
        otlp_endpoint=s.get("otlp_endpoint", str, d.otlp_endpoint),
        sample_ratio=ratio,
        record_content=s.get("record_content", bool, d.record_content),
        otlp_protocol=s.get("otlp_protocol", str, d.otlp_protocol).lower(),
        metrics_otlp=s.get("metrics_otlp", bool, d.metrics_otlp),
    )
    s.done()
    return TelemetryConfig(traces, log_format, max(0, recent))


def _health(s: Section, env_redis_url: str) -> HealthConfig:
    store = s.get("store", str, "memory")
    if store not in STORES:
        s.issues.add(join(s.path, "store"), f"unknown store {store!r} (known: {', '.join(STORES)})")
    redis_url = s.get("redis_url", str, "")
    if env_redis_url:
        # TURNOUT_REDIS_URL alone turns the fleet store on (a sidecar's usual wiring).
        store, redis_url = "redis", env_redis_url
    if store == "redis" and not redis_url:
        s.issues.add(join(s.path, "redis_url"), "required when store is 'redis'")
    elif redis_url and urlsplit(redis_url).scheme not in REDIS_SCHEMES:
        s.issues.add(
            join(s.path, "redis_url"),
            f"must start with one of {', '.join(REDIS_SCHEMES)}:// (got {urlsplit(redis_url).scheme or 'no scheme'})",
        )
    dc = HealthConfig()
    dh = HealthSettings()
    b, db = s.sub("breaker"), BreakerSettings()
    breaker = BreakerSettings(
        consecutive_failures=b.positive("consecutive_failures", int, db.consecutive_failures),
        failure_rate=b.positive("failure_rate", float, db.failure_rate),
        min_calls=b.positive("min_calls", int, db.min_calls),
        open_s=b.positive("open_s", float, db.open_s),
        open_max_s=b.positive("open_max_s", float, db.open_max_s),
        jitter=b.get("jitter", float, db.jitter),
        half_open_successes=b.positive("half_open_successes", int, db.half_open_successes),
        misconfigured_open_s=b.positive("misconfigured_open_s", float, db.misconfigured_open_s),
    )
    b.done()
    t, dt = s.sub("throttle"), ThrottleSettings()
    throttle = ThrottleSettings(
        default_s=t.positive("default_s", float, dt.default_s),
        max_s=t.positive("max_s", float, dt.max_s),
        retry_after_max_s=t.positive("retry_after_max_s", float, dt.retry_after_max_s),
    )
    t.done()
    settings = HealthSettings(
        window_s=s.positive("window_s", float, dh.window_s),
        bucket_s=s.positive("bucket_s", float, dh.bucket_s),
        ewma_tau_s=s.positive("ewma_tau_s", float, dh.ewma_tau_s),
        breaker=breaker,
        throttle=throttle,
    )
    if settings.bucket_s > settings.window_s:
        s.issues.add(join(s.path, "bucket_s"), "must not exceed window_s")
    health = HealthConfig(
        store=store,
        redis_url=redis_url,
        key_prefix=s.get("key_prefix", str, dc.key_prefix) or dc.key_prefix,
        sync_period_s=s.positive("sync_period_s", float, dc.sync_period_s),
        redis_timeout_s=s.positive("redis_timeout_s", float, dc.redis_timeout_s),
        probe_lock_s=s.positive("probe_lock_s", float, dc.probe_lock_s),
        pubsub=s.get("pubsub", bool, dc.pubsub),
        settings=settings,
    )
    s.done()
    return health


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
        fmt = p.get("format", str, "openai")
        if fmt not in FORMATS:
            p.issues.add(
                join(p.path, "format"), f"unknown format {fmt!r} (known: {', '.join(FORMATS)})"
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
            api_key=p.get("api_key", str, ""),
            format=fmt,
            headers=MappingProxyType(headers),
            query=MappingProxyType(query),
            timeouts=Timeouts(**decode_timeouts(p.sub("timeouts"))),
            max_connections=p.positive("max_connections", int, 100),
        )
        p.done()
    return out


def _price(s: Section) -> Price | None:
    if not s.data:
        s.done()
        return None
    price = Price(
        input_per_mtok=s.get("input_per_mtok", float, 0.0),
        output_per_mtok=s.get("output_per_mtok", float, 0.0),
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
            weight=t.get("weight", float, 1.0),
            capabilities=MappingProxyType(caps),
            supports=frozenset(supports),
        )
        out[str(tid)] = TargetConfig(str(tid), provider, model, profile)
        t.done()
    return out
