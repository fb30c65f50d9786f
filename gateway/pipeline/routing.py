"""From a parsed request to a routing decision: which route, which features, which order.

Shared by the proxied endpoints (which then send) and `POST /admin/route` (which only shows).
No I/O here: the health snapshot is read from the store's local view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.config.model import Config, RouteConfig
from gateway.edge.errors import InvalidRequest, UnknownModel
from gateway.formats.translate import unfit
from gateway.runtime.state import Live
from health.store import HealthSnapshot, HealthStore
from policies.compose import decide
from policies.features import InvalidFeature, extract, is_bare
from policies.types import (
    EVERYTHING,
    HEALTH,
    Candidate,
    Decision,
    Excluded,
    Policy,
    RequestFeatures,
    reads,
)

DEBUG_HEADER = "x-turnout-debug"  # request: "route" (or 1/true) asks for the explanation
ROUTE_HEADER = "x-turnout-route"  # response: the decision in one line
_MAX_HEADER_CHARS = 4096  # a route with many candidates and reasons: cut, never refused
_DEBUG_VALUES = frozenset({"route", "1", "true", "yes"})
_MAX_STEADY = 256


class Routed(msgspec.Struct, frozen=True):
    """One request's route, features and decision; `explanation` is the one-line form, empty
    when nobody asked for it (no trace recording, no debug)."""

    route: RouteConfig
    features: RequestFeatures
    policy: Policy
    decision: Decision
    health: HealthSnapshot  # what the policy saw
    explanation: str = ""


def wants_debug(headers: Mapping[str, str]) -> bool:
    value = headers.get(DEBUG_HEADER)
    return value is not None and value.strip().lower() in _DEBUG_VALUES


def header_value(explanation: str) -> str:
    if len(explanation) <= _MAX_HEADER_CHARS:
        return explanation
    return explanation[: _MAX_HEADER_CHARS - 3] + "..."


def find_route(
    config: Config, payload: Mapping[str, Any], headers: Mapping[str, str]
) -> RouteConfig:
    """The route for the request's `model` and metadata; 400/404-style errors otherwise."""
    alias = payload["model"]
    route = config.route(alias, headers, payload)
    if route is not None:
        return route
    if alias in config.aliases:
        raise InvalidRequest(
            f"No route for model '{alias}' matches this request's metadata "
            "(see the routes' `match` conditions).",
            param="model",
            code="no_matching_route",
        )
    raise UnknownModel(alias, config.aliases)


def route_request(
    live: Live,
    store: HealthStore,
    route: RouteConfig,
    operation: str,
    payload: Mapping[str, Any],
    body_bytes: int,
    headers: Mapping[str, str],
    *,
    explain: bool,
    ingress: str = "openai",
) -> Routed:
    """Extract the features once and ask the route's policy; `explain` fills in the notes.
    The request pays only for what the policy reads (`policies.types.reads`): no task rules
    for a policy that does not read the task, and availability alone from health for one
    that reads no more - unless the decision is to be explained, which shows everything."""
    config = live.config
    policy = live.policies[route.key]
    needs = EVERYTHING if explain else reads(policy)
    try:
        features = extract(
            operation,
            payload,
            body_bytes,
            rules=config.tasks,
            headers=headers,
            reads=needs,
        )
    except InvalidFeature as exc:
        raise InvalidRequest(str(exc), param=exc.param) from None
    steady_key = None
    if (
        not needs
        and is_bare(features)
        and config.foreign_to[ingress].isdisjoint(route.candidates)  # no fitness to check
        and store.plain(route.candidates)
    ):
        # A policy that reads nothing decides the same whenever every candidate is available
        # (`policies.types.reads`): one decision per route, operation, task and client format.
        steady_key = (route.key, operation, features.task, ingress)
        steady = live.steady.get(steady_key)
        if steady is not None:
            return steady
    candidates, unfit = _by_wire_format(config, route, operation, payload, ingress)
    snapshot = store.snapshot(route.candidates, availability=HEALTH not in needs)
    decision = decide(policy, features, candidates, snapshot, explain=explain)
    if unfit:
        decision = dataclasses.replace(decision, excluded=(*unfit, *decision.excluded))
    explanation = decision.explain() if explain else ""
    routed = Routed(route, features, policy, decision, snapshot, explanation)
    if steady_key is not None and _all_available(snapshot):
        if len(live.steady) >= _MAX_STEADY:  # keys come from the config (and task overrides)
            live.steady.clear()
        live.steady[steady_key] = routed
    return routed


def _all_available(snapshot: HealthSnapshot) -> bool:
    return all(view.why_unavailable() is None for view in snapshot.values())


def _by_wire_format(
    config: Config,
    route: RouteConfig,
    operation: str,
    payload: Mapping[str, Any],
    ingress: str = "openai",
) -> tuple[list[Candidate], list[Excluded]]:
    """The route's candidates, less those whose wire format cannot carry this request in the
    client's format `ingress` (an anthropic target and embeddings; with `translation: strict`,
    a lossy translation)."""
    foreign = config.foreign_to[ingress]
    if foreign.isdisjoint(route.candidates):  # the usual case: no translation at all
        return [config.targets[t].profile for t in route.candidates], []
    strict = route.translation == "strict"
    kept: list[Candidate] = []
    out: list[Excluded] = []
    for tid in route.candidates:
        target = config.targets[tid]
        fmt = config.providers[target.provider].format
        why = (
            None
            if fmt == ingress
            else unfit(payload, operation, fmt, target.model, strict=strict, source=ingress)
        )
        if why is None:
            kept.append(target.profile)
        else:
            out.append(Excluded(target.profile, "translation", why))
    return kept, out


def no_capable_target(route: RouteConfig, decision: Decision) -> InvalidRequest:
    return InvalidRequest(
        f"Route '{route.alias}': {decision.summary()}.",
        param="model",
        code="no_capable_target",
    )
