"""The live dashboard: `/ui` (a static page, no build step) and the JSON feeds it polls.

    GET /ui                    the page; /ui/dashboard.js and /ui/dashboard.css beside it
    GET|POST /ui/login         signing in (gateway.admin.login); POST /ui/logout
    GET /admin/traces          recent traces, newest first (?limit=N, default 50)
    GET /admin/traces/{id}     one trace by its 32-hex-digit id
    GET /admin/events          breaker transitions and failovers, newest first (?limit, ?since)

The targets table reads the existing `/admin/targets`. Breaker transitions come from the health
store's `TransitionLog` (health/breaker.py), which the breakers append to as each transition
happens, with its time; reading `/admin/events` moves what the log gathered since the last read
into the timeline, next to the failovers (one sequence, so `?since` covers both). A transition
that happened while nobody had the page open is therefore still shown, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.admin import access, login
from gateway.admin.assets import asset_response, page_response
from gateway.admin.endpoints import json_response
from gateway.edge.context import RUNTIME
from gateway.edge.errors import InvalidRequest, NotFound
from gateway.runtime.state import Runtime

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: object) -> web.Response:
    return json_response(data, headers={"Cache-Control": "no-store"})


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high}.", param=name)
    return value


async def page(request: web.Request) -> web.Response:
    """The dashboard; a caller who has not signed in (the admin token is set) is sent to the
    sign-in form, with the old `/ui?token=...` too (the token is never read from a URL)."""
    if access.proof(request.app[RUNTIME].config, request) is None:
        return web.Response(status=303, headers={"Location": "ui/login"})
    return page_response("dashboard.html")


async def page_slash(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "../ui"})


async def asset(request: web.Request) -> web.Response:
    found = asset_response(request.match_info["name"])
    if found is None:
        raise NotFound(f"Unknown path {request.path}.")
    return found


async def traces(request: web.Request) -> web.Response:
    recent = request.app[RUNTIME].telemetry.recent
    limit = _int_param(request, "limit", 50, 1, 10_000)
    held, pending = recent.counts()
    return _json(
        {
            "object": "list",
            "capacity": recent.max_traces,
            "held": held,
            "in_progress": pending,
            "data": recent.snapshot(limit),
        }
    )


async def trace(request: web.Request) -> web.Response:
    trace_id = request.match_info["trace_id"]
    found = request.app[RUNTIME].telemetry.recent.get(trace_id)
    if found is None:
        raise NotFound(f"No recent trace with id '{trace_id}'.", param="trace_id")
    return _json(found)


def note_transitions(rt: Runtime) -> None:
    """Move the breaker transitions logged since the last read into the timeline."""
    log = rt.store.transitions
    # A read settles the lazy open -> half-open moves that are due (stamped when they were due).
    rt.store.snapshot(rt.config.targets)
    timeline = rt.telemetry.recent.timeline
    for t in log.take():
        timeline.add(
            "breaker",
            t.at,
            target=t.target_id,
            to=t.to.value,
            reason=t.reason,
            **{"from": t.from_state.value},
        )


async def events(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit = _int_param(request, "limit", 100, 1, 10_000)
    since = _int_param(request, "since", 0, 0, 2**62)
    note_transitions(rt)
    return _json({"object": "list", "data": rt.telemetry.recent.timeline.snapshot(limit, since)})


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/ui", page),
    ("GET", "/ui/", page_slash),
    ("GET", "/ui/login", login.login_page),  # before /ui/{name}
    ("POST", "/ui/login", login.login),
    ("POST", "/ui/logout", login.logout),
    ("GET", "/ui/{name}", asset),
    ("GET", "/admin/traces", traces),
    ("GET", "/admin/traces/{trace_id}", trace),
    ("GET", "/admin/events", events),
)
