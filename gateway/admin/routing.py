"""What the gateway is configured to do, and what it would do now: `GET /admin/config` and
`POST /admin/route` (a dry run: the routing decision for a request body, nothing sent).

Neither shows a secret: provider keys, extra headers and Redis URLs stay out, and a base URL
loses any user:password part.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import orjson
from aiohttp import web

from gateway.admin.endpoints import json_response
from gateway.config.decode import ConfigIssue
from gateway.config.diff import SECTIONS, view
from gateway.config.model import Config, RouteConfig
from gateway.edge import ingress
from gateway.edge.accept import parse_payload, read_body
from gateway.edge.context import RUNTIME
from gateway.edge.errors import InvalidRequest
from gateway.pipeline.proxy import OPERATIONS
from gateway.pipeline.routing import Routed, find_route, route_request
from gateway.resilience.dry_run import would_try
from gateway.resilience.same_target import SameTarget
from gateway.runtime.reload import is_reloadable
from gateway.runtime.state import ReloadReport
from health.breaker import Admission
from policies.types import health_of

# "chat" -> /v1/chat/...: OpenAI's paths (the dry run speaks OpenAI's format)
_ENDPOINTS = {op: path for path, (op, _) in OPERATIONS.items() if path not in ingress.BY_PATH}


def public_url(url: str) -> str:
    """The URL without credentials or query (`https://user:pw@host/v1?key=k` ->
    `https://host/v1`): either may hold a secret."""
    parts = urlsplit(url)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc, query="", fragment=""))


def _issue(i: ConfigIssue) -> dict[str, object]:
    out: dict[str, object] = {"path": i.path, "message": i.message}
    if i.line is not None:
        out["line"], out["column"] = i.line, i.column
    return out


def _reload(report: ReloadReport | None) -> dict[str, object] | None:
    if report is None:
        return None
    return {
        "at": round(report.at_wall_s, 3),
        "result": "ok" if report.ok else "rejected",
        "source": report.source,
        "problems": [_issue(p) for p in report.problems],
        "changes": [c.as_dict() for c in report.changes],
    }


def _route(r: RouteConfig) -> dict[str, object]:
    m = r.match
    match = {"headers": dict(m.headers), "metadata": dict(m.metadata), "user": m.user}
    return {
        "model": r.alias,
        "key": r.key,
        "policy": r.policy,
        "candidates": list(r.candidates),
        "match": match if m.conditions else None,
        "max_attempts": r.max_attempts,
        "deadline_s": r.deadline_s,
        "hedge": None if r.hedge is None else {"after_s": r.hedge.after_s, "p95": r.hedge.use_p95},
        "debug": r.debug,
    }


def config_view(config: Config) -> dict[str, object]:
    return {
        "routes": [_route(r) for r in config.routes],
        "targets": [
            {"id": t.id, "provider": t.provider, "model": t.model} for t in config.targets.values()
        ],
        "providers": [
            {"name": p.name, "base_url": public_url(p.base_url), **view(p)}
            for p in config.providers.values()
        ],
        "health_store": config.health.store,
        **{name: view(getattr(config, name)) for name in SECTIONS},
    }


async def show_config(request: web.Request) -> web.Response:
    """GET /admin/config: the config in use, and how the last reload went (every problem
    with its path; line and column for YAML syntax errors)."""
    rt = request.app[RUNTIME]
    config = rt.config
    last = rt.last_reload
    return json_response(
        {
            "source": config.source,
            "loaded_at": round(rt.loaded_wall_s, 3),
            "reloadable": is_reloadable(config.source),
            "status": "rejected" if last is not None and not last.ok else "ok",
            "last_reload": _reload(last),
            "reloads": {"ok": rt.reloads_ok, "failed": rt.reloads_failed},
            "config": config_view(config),
        }
    )


def _operation(request: web.Request, payload: object) -> str:
    """`?endpoint=chat|completions|embeddings`, else guessed from the body's shape."""
    given = request.query.get("endpoint")
    if given is not None:
        if given not in _ENDPOINTS:
            raise InvalidRequest(
                f"Query parameter 'endpoint' must be one of {', '.join(_ENDPOINTS)}.",
                param="endpoint",
            )
        return given
    if isinstance(payload, dict):
        if "input" in payload:
            return "embeddings"
        if "prompt" in payload and "messages" not in payload:
            return "completions"
    return "chat"


def decision_view(
    routed: Routed,
    *,
    panic: bool,
    peek: Callable[[str], Admission],
    retries: Callable[[str], SameTarget],
) -> dict[str, object]:
    d, f = routed.decision, routed.features
    ranked = []
    for i, r in enumerate(d.ranked):
        c = r.candidate
        why_not = health_of(routed.health, c.target_id).why_unavailable()
        ranked.append(
            {
                "rank": i + 1,
                "target": c.target_id,
                "provider": c.provider,
                "model": c.model,
                "score": round(r.score, 6),
                "available": why_not is None,
                "note": r.note,
            }
        )
    return {
        "model": routed.route.alias,
        "route": routed.route.key,
        "policy": d.policy,
        "features": {
            "operation": f.operation,
            "task": f.task,
            "estimated_input_tokens": f.estimated_input_tokens,
            "max_tokens": f.max_tokens,
            "stream": f.stream,
            "tools": f.tools,
            "images": f.images,
            "json_output": f.json_output,
            "max_cost": f.max_cost,
            "quality_floor": f.quality_floor,
        },
        "ranked": ranked,
        "excluded": [
            {"target": e.candidate.target_id, "by": e.by, "reason": e.reason} for e in d.excluded
        ],
        # the attempt loop's order if every attempt failed, from the loop's own planner: the
        # targets health admits now; with none, the one panic attempt
        "would_try": would_try(
            [r.candidate for r in d.ranked], routed.route.max_attempts, peek, panic, retries
        ),
        "explanation": routed.explanation,
        "error": None
        if d.ranked
        else {"status": 400, "code": "no_capable_target", "message": d.summary()},
        "sent": False,
    }


async def dry_run(request: web.Request) -> web.Response:
    """POST /admin/route: the body a client would send to /v1/...; the answer is the decision
    the gateway would make for it now (route, features, ranked candidates with scores and
    notes, exclusions with reasons). Nothing is sent to any provider. The request's headers
    count as they would on the real call (route `match`, routing overrides)."""
    rt = request.app[RUNTIME]
    live = rt.live
    server = live.config.server
    body = await read_body(request, server.max_body_bytes, server.body_timeout_s)
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raw = None  # parse_payload reports it in the usual shape
    operation = _operation(request, raw)
    payload = parse_payload(body, operation)
    route = find_route(live.config, payload, request.headers)
    routed = route_request(
        live, rt.store, route, operation, payload, len(body), request.headers, explain=True
    )
    config = live.config
    answer = decision_view(
        routed,
        panic=config.resilience.panic,
        peek=rt.store.admission,
        retries=lambda tid: SameTarget.of(config, routed.route, tid),
    )
    answer["endpoint"] = _ENDPOINTS[operation]
    return json_response(answer)
