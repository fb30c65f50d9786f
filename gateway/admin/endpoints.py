"""Operational endpoints: liveness, readiness, the model list and the targets' health."""

from __future__ import annotations

import asyncio
import os
import time

import orjson
from aiohttp import web

from gateway.admin.access import proof
from gateway.edge.context import CLIENT, RUNTIME
from gateway.edge.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unprocessable,
    counted,
)
from health.signals import TargetHealth


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer (orjson) for the operational endpoints."""
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _insider(request: web.Request) -> bool:
    """May this caller of a probe learn more than alive or ready (the pid, the health store,
    the config's path, the last reload error)? With the admin token or a session; without
    one only where no token is set *and* the admin plane shares this listener (so it is on
    loopback: `gateway.edge.exposure`). A probe on a main port whose admin plane listens
    apart may face anyone."""
    rt = request.app[RUNTIME]
    seen = proof(rt.config, request)
    return seen in ("bearer", "cookie") or (seen == "open" and rt.admin_listener is None)


async def healthz(request: web.Request) -> web.Response:
    if not _insider(request):
        return json_response({"status": "ok"})
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    status = "draining" if rt.drain.draining else "ready"
    code = 503 if rt.drain.draining else 200
    if not _insider(request):  # a stranger learns ready or not, nothing more
        return json_response({"status": status}, code)
    st = rt.store.status()
    body = {
        "status": status,
        "health_store": {"backend": st.backend, "degraded": st.degraded, "detail": st.detail},
        "config": rt.config.source,
        "reloads": {
            "ok": rt.reloads_ok,
            "failed": rt.reloads_failed,
            "last_error": rt.last_reload_error or None,
        },
    }
    return json_response(body, code)


async def models(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    created = int(rt.started_wall_s)
    client = request.get(CLIENT)  # with client keys: only the routes this key may use
    data = [
        {"id": alias, "object": "model", "created": created, "owned_by": "turnout"}
        for alias in rt.config.aliases
        if client is None or client.may_use(alias)
    ]
    return json_response({"object": "list", "data": data})


def _wall(seconds_from_now: float, now_wall: float) -> float | None:
    return round(now_wall + seconds_from_now, 3) if seconds_from_now > 0 else None


def target_view(
    h: TargetHealth, provider: str, model: str, now_wall: float, now_mono: float, view: str
) -> dict[str, object]:
    """One target as operators see it. `view` is "fleet" or "local" (this replica alone)."""
    t = h.last_transition
    return {
        "id": h.target_id,
        "provider": provider,
        "model": model,
        "state": h.state.value,
        "misconfigured": h.misconfigured,
        "misconfigured_reason": h.misconfigured_reason or None,
        "error_rate": round(h.error_rate, 4),
        "window_calls": h.window_calls,
        "consecutive_failures": h.consecutive_failures,
        "latency_ms_p50": h.latency_ms_p50,
        "latency_ms_ewma": h.latency_ms_ewma,
        "ttft_ms_p50": h.ttft_ms_p50,
        "ttft_ms_ewma": h.ttft_ms_ewma,
        "in_flight": h.in_flight,
        # Why it takes no new requests now (the one rule, `TargetHealth.why_unavailable`).
        "unavailable": h.why_unavailable(),
        "waiting_without_answer_s": round(h.silent_s, 3),  # requests waiting, nothing back
        "hang_after_s": round(h.hang_after_s, 3),  # ... past this it is not answering
        "throttled_until": _wall(h.throttled_for_s, now_wall),
        "open_until": _wall(h.open_for_s, now_wall),
        "last_transition": None
        if t is None
        else {"to": t.to.value, "reason": t.reason, "at": round(now_wall - (now_mono - t.at_s), 3)},
        "fleet_error_rate": None if h.fleet_error_rate is None else round(h.fleet_error_rate, 4),
        "fleet_window_calls": h.fleet_window_calls,
        "view": view,
    }


async def targets(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    config = rt.config
    snap = rt.store.snapshot(config.targets, detailed=True)
    now_wall, now_mono = time.time(), time.monotonic()
    st = rt.store.status()
    view = "fleet" if st.backend != "memory" and not st.degraded else "local"
    data = [
        target_view(snap[tid], t.provider, t.model, now_wall, now_mono, view)
        for tid, t in config.targets.items()
    ]
    return json_response(
        {"object": "list", "store": st.backend, "degraded": st.degraded, "data": data}
    )


async def reload_config(request: web.Request) -> web.Response:
    """POST /admin/reload: re-read the config file; keep the old config if it is invalid."""
    from gateway.runtime.reload import is_reloadable, reload

    rt = request.app[RUNTIME]
    if not await asyncio.to_thread(is_reloadable, rt.config.source):
        detail = f"config {rt.config.source} is not a file"
        err = Conflict(f"Nothing to reload: {detail}.", code="not_reloadable")
        return json_response(
            {"error": err.shape(), "status": "not_reloadable", "detail": detail}, err.status
        )
    result = await reload(rt)
    if not result.ok:
        problems = list(result.problems)
        rejected = Unprocessable(
            f"The new config was rejected ({counted(len(problems), 'problem')}); the previous "
            "one still serves.",
            code="config_rejected",
        )
        body = {"error": rejected.shape(), "status": "rejected", "problems": problems}
        return json_response(body, rejected.status)
    return json_response(
        {
            "status": "reloaded",
            "changed": result.changed,
            "changes": [c.as_dict() for c in result.changes],
            "routes": list(rt.config.aliases),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the gateway's OpenTelemetry metrics."""
    rt = request.app[RUNTIME]
    body = rt.telemetry.metrics.prometheus_text()  # on the loop: gauges read live health
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def feedback(request: web.Request) -> web.Response:
    """POST /v1/feedback {"request_id": ..., "score": 0..1}: the caller's verdict on an
    answer, for routes whose policy learns (adaptive). Other policies ignore it."""
    from policies.compose import observe
    from policies.types import Observation

    rt = request.app[RUNTIME]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    request_id, score = body.get("request_id"), body.get("score")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidRequest(
            "'request_id' is required (the x-request-id of the answer).", param="request_id"
        )
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise InvalidRequest("'score' must be a number between 0 and 1.", param="score")
    client = request.get(CLIENT)
    owner = rt.answers.owner(request_id)
    if owner is not None and owner != (client.name if client is not None else ""):
        # Only the key that made the request may judge its answer: another key's verdicts
        # would steer what the route's policy learns (forged zero scores moved it).
        raise Forbidden(
            "Feedback is accepted only from the client key that made the request.",
            param="request_id",
            code="not_your_answer",
        )
    served = rt.answers.judge(request_id)
    if served is None and rt.answers.judged(request_id):
        raise Conflict(
            f"Feedback for the answer '{request_id}' was already recorded (one per answer).",
            param="request_id",
        )
    if served is None:
        raise NotFound(f"No recent answer with request id '{request_id}'.", param="request_id")
    route, target = served
    policy = rt.policies.get(route)
    if policy is not None:
        observe(policy, Observation(target, None, feedback=float(score)))
    return json_response({"status": "recorded", "route": route.split("#", 1)[0], "target": target})
