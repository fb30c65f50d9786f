"""The proxied endpoints: accept -> resolve -> rank -> exchange (attempt loop, relay).

This module reads the request and decides *what* to send where; `gateway.exchange` runs the
attempts and writes the answer.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from opentelemetry.trace import SpanKind

from gateway.accept import parse_payload, read_body
from gateway.context import REQUEST_ID, ROUTE, RUNTIME
from gateway.errors import InvalidRequest, UnknownModel
from gateway.exchange import Exchange
from policies.compose import decide
from policies.features import InvalidFeature, extract

# path on the gateway -> (operation, path under the provider's base URL)
OPERATIONS = {
    "/v1/chat/completions": ("chat", "/chat/completions"),
    "/v1/completions": ("completions", "/completions"),
    "/v1/embeddings": ("embeddings", "/embeddings"),
}


def client_deadline_s(request: web.Request, header: str) -> float | None:
    """The caller's deadline header (milliseconds), if any. It can only shorten ours."""
    raw = request.headers.get(header)
    if raw is None:
        return None
    try:
        ms = float(raw)
    except ValueError:
        ms = -1.0
    if not ms > 0 or ms == float("inf"):
        raise InvalidRequest(
            f"Header {header} must be a positive number of milliseconds.", param=header
        )
    return ms / 1000.0


async def handle(request: web.Request) -> web.StreamResponse:
    """One SERVER span per request, inside the caller's trace when it sent a traceparent."""
    rt = request.app[RUNTIME]
    tel = rt.telemetry
    if not tel.tracing.recording:
        return await _handle(request)
    with tel.tracer.start_as_current_span(
        f"POST {request.path}",
        context=tel.tracing.extract(request.headers),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "url.path": request.path,
            "switchyard.request_id": request[REQUEST_ID],
        },
    ) as span:
        response = await _handle(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


async def _handle(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    config = rt.config  # one config for the whole request, even across a reload
    operation, upstream_path = OPERATIONS[request.path]
    body = await read_body(request, config.server.max_body_bytes)
    payload = parse_payload(body, operation)
    alias = payload["model"]
    route = config.route(alias, request.headers, payload)
    if route is None:
        if alias in config.aliases:
            raise InvalidRequest(
                f"No route for model '{alias}' matches this request's metadata "
                "(see the routes' `match` conditions).",
                param="model",
                code="no_matching_route",
            )
        raise UnknownModel(alias, config.aliases)
    request[ROUTE] = alias  # only configured aliases become metric labels
    budget_s = route.deadline_s
    client_s = client_deadline_s(request, config.resilience.deadline_header)
    if client_s is not None:
        budget_s = client_s if budget_s is None else min(budget_s, client_s)
    deadline = None if budget_s is None else asyncio.get_running_loop().time() + budget_s
    try:
        features = extract(
            operation, payload, len(body), rules=config.tasks, headers=request.headers
        )
    except InvalidFeature as exc:
        raise InvalidRequest(str(exc), param=exc.param) from None
    candidates = [config.targets[t].profile for t in route.candidates]
    policy = rt.policies[route.key]
    explain = rt.telemetry.tracing.recording
    decision = decide(
        policy, features, candidates, rt.store.snapshot(route.candidates), explain=explain
    )
    ranked = list(decision.ranked)
    rt.telemetry.ranked(
        alias, policy.name, [(r.candidate.target_id, r.score, r.note) for r in ranked]
    )
    if not ranked:
        raise InvalidRequest(
            f"Route '{alias}': {decision.summary()}.",
            param="model",
            code="no_capable_target",
        )
    exchange = Exchange(
        request,
        rt,
        config,
        route,
        ranked,
        payload,
        upstream_path,
        operation,
        request[REQUEST_ID],
        deadline,
        policy=policy,
    )
    return await exchange.run()
