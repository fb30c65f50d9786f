"""The proxied endpoints: accept -> resolve -> rank -> exchange (attempt loop, relay).

This module reads the request and decides *what* to send where; `gateway.pipeline.exchange` runs the
attempts and writes the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from opentelemetry.trace import SpanKind

from gateway.edge import ingress
from gateway.edge.accept import Held, parse_payload, read_body
from gateway.edge.clients import steering
from gateway.edge.context import CALL, RUNTIME, Call
from gateway.edge.errors import Forbidden, InvalidRequest
from gateway.limits.edge import admit
from gateway.pipeline.exchange import Ask, Exchange
from gateway.pipeline.routing import (
    find_route,
    header_value,
    no_capable_target,
    route_request,
    wants_debug,
)
from gateway.runtime.state import Runtime

# path on the gateway -> (operation, path under the provider's base URL)
OPERATIONS = {
    "/v1/chat/completions": ("chat", "/chat/completions"),
    "/v1/completions": ("completions", "/completions"),
    "/v1/embeddings": ("embeddings", "/embeddings"),
    ingress.MESSAGES: ("chat", "/messages"),  # Anthropic's clients (gateway.edge.ingress)
    ingress.RESPONSES_PATH: ("chat", "/responses"),  # always translated (gateway.formats)
}


MAX_CLIENT_DEADLINE_MS = 86_400_000.0  # a day: beyond it a deadline means nothing


def client_deadline_s(headers: Mapping[str, str], header: str) -> float | None:
    """The caller's deadline header (milliseconds, at most a day), if any. It can only
    shorten ours."""
    raw = headers.get(header)
    if raw is None:
        return None
    try:
        ms = float(raw)
    except ValueError:
        ms = -1.0
    if not 0 < ms <= MAX_CLIENT_DEADLINE_MS:
        raise InvalidRequest(
            f"Header {header} must be a positive number of milliseconds, at most "
            f"{MAX_CLIENT_DEADLINE_MS:.0f} (a day).",
            param=header,
        )
    return ms / 1000.0


async def handle(request: web.Request) -> web.StreamResponse:
    """One SERVER span per request, inside the caller's trace when it sent a traceparent.
    The body's bytes count against server.max_body_bytes_in_flight until the request ends:
    the body, its parsed form and the attempts' copies live that long."""
    rt = request.app[RUNTIME]
    tel = rt.telemetry
    call: Call = request[CALL]
    if not tel.tracing.recording:
        with rt.body_bytes.hold() as held:
            return await _proxy(request, rt, held, call)
    with (
        tel.tracer.start_as_current_span(
            f"POST {request.path}",
            context=tel.tracing.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "POST",
                "url.path": request.path,
                "turnout.request_id": call.request_id,
                **_client_attributes(call),
            },
        ) as span,
        rt.body_bytes.hold() as held,
    ):
        response = await _proxy(request, rt, held, call)
        span.set_attribute("http.response.status_code", response.status)
        return response


def _client_attributes(call: Call) -> dict[str, str]:
    client = call.client
    if client is None:
        return {}
    labels = {f"turnout.client.{k}": v for k, v in client.labels.items()}
    return {"turnout.client": client.name, **labels}


async def _proxy(request: web.Request, rt: Runtime, held: Held, call: Call) -> web.StreamResponse:
    live = rt.live  # one config and its policies for the whole request, even across a reload
    operation, upstream_path = OPERATIONS[request.path]
    config = live.config
    server = config.server
    body = await read_body(request, server.max_body_bytes, server.body_timeout_s, held)
    client_format = ingress.BY_PATH.get(request.path, ingress.OPENAI)
    payload = parse_payload(body, operation, ingress.REQUIRED.get(client_format))
    if client_format != ingress.OPENAI:  # what that format requires besides (a 400 if not)
        ingress.check(payload, client_format)
    body_size = len(body)
    del body  # only the parsed form is needed from here on
    headers = request.headers
    routed_payload: Mapping[str, Any] = payload
    client = call.client
    if client is not None:  # what this client may steer: the rest is ignored
        headers, routed_payload = steering(client, request.headers, payload)
    route = find_route(config, routed_payload, headers)
    if client is not None and not client.may_use(route.alias):
        raise Forbidden(
            f"This client key may not use model {route.alias!r}.",
            param="model",
            code="route_not_allowed",
        )
    call.route = route.alias  # only configured aliases become metric labels
    if client is not None:  # gateway.limits: 429 over the key's rate limits or budgets
        admit(request, rt.limits, rt.telemetry.metrics, client)
    budget_s = route.deadline_s
    client_s = client_deadline_s(headers, config.resilience.deadline_header)
    if client_s is not None:
        budget_s = client_s if budget_s is None else min(budget_s, client_s)
    deadline = None if budget_s is None else asyncio.get_running_loop().time() + budget_s
    debug = route.debug or (config.server.debug_header and wants_debug(headers))
    tel = rt.telemetry
    routed = route_request(
        live,
        rt.store,
        route,
        operation,
        payload,
        body_size,
        headers,
        explain=debug or tel.tracing.recording,
        ingress=client_format,
    )
    decision = routed.decision
    ranked = list(decision.ranked)
    if tel.tracing.recording:
        tel.ranked(route.alias, decision, routed.explanation)
    if debug:
        call.explanation = header_value(routed.explanation)
    if not ranked:
        raise no_capable_target(route, decision)
    ask = Ask(
        call.request_id,
        operation,
        upstream_path,
        payload,
        route,
        ranked,
        deadline,
        routed.policy,
        client.name if client is not None else "",
        client_format,
    )
    return await Exchange(request, rt, config, ask).run()
