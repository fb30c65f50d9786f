"""Decoding routes: their candidates, policy, match, hedge and overrides."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

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
from gateway.config.sections import decode_overrides, read_setting
from health.declared import entry
from policies.loading import DEFAULT_POLICY_FACTORY, provision_policy
from policies.types import Candidate


def _setting(r: Section, name: str, default: Any) -> Any:
    """A route's override of a declared setting, or `default` (resilience's) when unset."""
    e = entry(RouteConfig, name)
    return default if r.raw(e.key) is None else read_setting(r, e)


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
        # Provisioning the policy is its check: what comes back is what the runtime uses.
        factory, problems = provision_policy(policy_raw, join(r.path, "policy"))
        for ppath, message in problems:
            issues.add(ppath, message)
        candidates = _candidates(r, providers, targets)
        r.raw("hedge")  # a known key, even when absent
        out.append(
            RouteConfig(
                alias=alias,
                candidates=candidates,
                policy=factory.name if factory is not None else str(policy_raw),
                policy_spec=policy_raw,
                make_policy=factory if factory is not None else DEFAULT_POLICY_FACTORY,
                match=match,
                key=f"{alias}#{sum(1 for o in out if o.alias == alias)}",
                max_attempts=_setting(r, "max_attempts", defaults.max_attempts),
                timeouts=MappingProxyType(decode_overrides(r.sub("timeouts"), Timeouts)),
                deadline_s=_setting(r, "deadline_s", defaults.deadline_s),
                same_target_retries=_setting(r, "same_target_retries", None),
                retry_after_wait_s=_setting(r, "retry_after_wait_s", None),
                continuation=_setting(r, "continuation", defaults.continuation),
                hedge=_hedge(r.sub("hedge")) if r.has("hedge") else None,
                debug=_setting(r, "debug", entry(RouteConfig, "debug").default),
                translation=_setting(r, "translation", entry(RouteConfig, "translation").default),
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
