"""Decoding routes, per-phase timeouts and the attempt loop's knobs."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.config.decode import Issues, Section, join
from gateway.config.model import (
    Hedge,
    ProviderConfig,
    ResilienceConfig,
    RouteConfig,
    RouteMatch,
    TargetConfig,
    Timeouts,
)
from policies.loading import build_policy
from policies.types import Candidate

TIMEOUT_KEYS = ("connect_s", "headers_s", "first_token_s", "idle_s", "total_s")


def decode_timeouts(s: Section) -> dict[str, float]:
    """The phase timeouts that are set (a provider fills the rest with defaults; a route's
    override only the provider's fields it names)."""
    out: dict[str, float] = {}
    for key in TIMEOUT_KEYS:
        if s.has(key):
            out[key] = s.positive(key, float, getattr(Timeouts(), key))
        else:
            s.raw(key)  # known, even when absent
    s.done()
    return out


def decode_resilience(s: Section) -> ResilienceConfig:
    d = ResilienceConfig()
    deadline = s.raw("deadline_s")
    header = s.get("deadline_header", str, d.deadline_header).strip().lower()
    cfg = ResilienceConfig(
        max_attempts=s.positive("max_attempts", int, d.max_attempts),
        backoff_base_s=s.positive("backoff_base_s", float, d.backoff_base_s),
        backoff_cap_s=s.positive("backoff_cap_s", float, d.backoff_cap_s),
        budget_ratio=s.get("budget_ratio", float, d.budget_ratio),
        budget_min_retries=s.get("budget_min_retries", int, d.budget_min_retries),
        budget_window_s=s.positive("budget_window_s", float, d.budget_window_s),
        deadline_s=None if deadline is None else s.positive("deadline_s", float, 60.0),
        deadline_header=header or d.deadline_header,
        panic=s.get("panic", bool, d.panic),
    )
    if cfg.budget_ratio < 0:
        s.issues.add(join(s.path, "budget_ratio"), "must not be negative")
    if cfg.budget_min_retries < 0:
        s.issues.add(join(s.path, "budget_min_retries"), "must not be negative")
    s.done()
    return cfg


def _strings(s: Section) -> dict[str, str]:
    out = {}
    for k in list(s.data):
        out[str(k)] = s.coerce(s.raw(k), str, join(s.path, str(k)), "")
    s.done()
    return out


def _match(s: Section) -> RouteMatch:
    """`match:` picks this route among those sharing an alias, by request metadata."""
    headers = {k.lower(): v for k, v in _strings(s.sub("headers")).items()}
    metadata = _strings(s.sub("metadata"))
    user = s.get("user", str, "")
    s.done()
    return RouteMatch(MappingProxyType(headers), MappingProxyType(metadata), user or None)


def _hedge(s: Section) -> Hedge | None:
    after = s.raw("after")
    floor = s.get("min_s", float, 0.0)
    hedge: Hedge | None
    if after == "p95":
        hedge = Hedge(after_s=floor, use_p95=True)
    elif isinstance(after, int | float) and not isinstance(after, bool) and after > 0:
        hedge = Hedge(after_s=float(after))
    else:
        s.issues.add(join(s.path, "after"), "required: seconds (> 0) or 'p95'")
        hedge = None
    s.done()
    return hedge


def decode_routes(
    data: object,
    providers: Mapping[str, ProviderConfig],
    targets: dict[str, TargetConfig],
    issues: Issues,
    defaults: ResilienceConfig,
) -> tuple[RouteConfig, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        issues.add("routes", f"expected a list, got {type(data).__name__}")
        return ()
    out: list[RouteConfig] = []
    catch_all: set[str] = set()  # aliases that already have a route without `match`
    for i, item in enumerate(data):
        r = Section(item, join("routes", i), issues)
        if not r.ok:
            continue
        alias = r.get("alias", str, "")
        match = _match(r.sub("match"))
        if not alias:
            issues.add(join(r.path, "alias"), "required")
        elif alias in catch_all:
            issues.add(
                join(r.path, "alias"),
                f"duplicate alias {alias!r}: an earlier route for it has no `match`, "
                "so this one could never be chosen",
            )
        if not match.conditions:
            catch_all.add(alias)
        policy_raw = r.raw("policy")
        built, problems = build_policy(policy_raw, join(r.path, "policy"))
        for ppath, message in problems:
            issues.add(ppath, message)
        policy = built.name if built is not None else str(policy_raw)
        candidates = _candidates(r, providers, targets)
        deadline = r.raw("deadline_s")
        r.raw("hedge")  # a known key, even when absent
        out.append(
            RouteConfig(
                alias=alias,
                candidates=candidates,
                policy=policy,
                policy_spec=policy_raw,
                match=match,
                key=f"{alias}#{sum(1 for o in out if o.alias == alias)}",
                max_attempts=r.positive("max_attempts", int, defaults.max_attempts),
                timeouts=MappingProxyType(decode_timeouts(r.sub("timeouts"))),
                deadline_s=defaults.deadline_s
                if deadline is None
                else r.positive("deadline_s", float, 1.0),
                hedge=_hedge(r.sub("hedge")) if r.has("hedge") else None,
                debug=r.get("debug", bool, False),
            )
        )
        r.done()
    return tuple(out)


def _candidates(
    r: Section, providers: Mapping[str, ProviderConfig], targets: dict[str, TargetConfig]
) -> tuple[str, ...]:
    raw = r.raw("candidates")
    path = join(r.path, "candidates")
    if not isinstance(raw, list) or not raw:
        r.issues.add(path, "required: a non-empty list of target ids")
        return ()
    out: list[str] = []
    for j, ref in enumerate(raw):
        cpath = join(path, j)
        if not isinstance(ref, str) or not ref:
            r.issues.add(cpath, f"expected a target id, got {ref!r}")
            continue
        if ref not in targets:
            model, at, provider = ref.rpartition("@")
            if at and model and provider in providers:
                # `model@provider` names a target without a profile of its own.
                targets[ref] = TargetConfig(ref, provider, model, Candidate(ref, provider, model))
            else:
                r.issues.add(cpath, f"unknown target {ref!r}")
                continue
        if ref in out:
            r.issues.add(cpath, f"target {ref!r} listed twice")
            continue
        out.append(ref)
    return tuple(out)
