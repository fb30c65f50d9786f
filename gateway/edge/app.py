"""The aiohttp application: routes, the error/request-id middleware and the lifecycle; the
admin plane as an app of its own when it has its own listener."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.admin import access, dashboard
from gateway.admin import endpoints as admin
from gateway.admin import routing as admin_routing
from gateway.config.model import Config
from gateway.edge import ingress, protocol
from gateway.edge.clients import authenticate
from gateway.edge.context import ADMIN_APP, CALL, CLIENT, RUNTIME, Call
from gateway.edge.errors import (
    GatewayError,
    HttpError,
    Internal,
    MethodNotAllowed,
    NotFound,
    ShuttingDown,
)
from gateway.edge.shutdown import absorb_shutdown
from gateway.limits.edge import stamp_answer
from gateway.pipeline import proxy
from gateway.pipeline.routing import ROUTE_HEADER
from gateway.runtime.reload import ConfigWatcher, is_reloadable
from gateway.runtime.state import Runtime
from gateway.telemetry.gauges import register_health_gauges
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.logs import RateLimitedLog
from health.store import HealthStore

log = logging.getLogger("turnout.app")
_errors = RateLimitedLog(log)  # a bug a request can trigger must not flood the log

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_ID_BYTES = 16
_random = bytearray()  # bytes from the OS's CSPRNG not used yet
os.register_at_fork(after_in_child=_random.clear)  # a forked worker never reuses its parent's


def _request_id(request: web.Request) -> str:
    """The caller's X-Request-Id if it is safe to echo, else 128 random bits in hex. The
    random bytes come from the OS 4 KiB at a time: one `getrandom` per 256 requests."""
    given = request.headers.get("X-Request-Id")
    if given and _SAFE_ID.match(given):
        return given
    if not _random:
        _random.extend(os.urandom(256 * _ID_BYTES))
    fresh = _random[-_ID_BYTES:].hex()
    del _random[-_ID_BYTES:]
    return fresh


def _error_response(err: GatewayError, request: web.Request) -> web.Response:
    """The one place an error becomes a response: in the shape of the client's format."""
    body = err.body(ingress.of(request.path))
    response = web.Response(
        status=err.status, body=body, content_type="application/json", headers=err.headers
    )
    if err.close_connection:
        response.force_close()
    return response


def enveloped(handler: Handler, rt: Runtime) -> Handler:
    """`handler` with what every answer gets: a request id, every error in the shape of the
    client's format, request metrics. Each route's handler is wrapped (not an aiohttp
    middleware: that is one more coroutine and app bookkeeping on every request); so is the
    catch-all `_unrouted`. The request's `Call` is `request[CALL]` for the handler."""

    async def envelope(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        protocol.request_started(request)  # its headers are in: the header timer stops
        call = request[CALL] = Call(_request_id(request))
        try:
            response = await _answer(request, handler, rt, call)
        finally:
            protocol.request_finished(request)
        if request.path in proxy.OPERATIONS:
            key = (("route", call.route), ("status", str(response.status)))
            m = rt.telemetry.metrics
            m.request_duration.record_key(time.perf_counter() - started, key)  # and counted
        return response

    return envelope


async def _unrouted(request: web.Request) -> web.StreamResponse:
    """What no route took: 405 with the methods the path has, else 404 (each in the
    client's format's shape, from `_answer`)."""
    allowed: set[str] = set()
    catch_all = request.app[_CATCH_ALL]
    for resource in request.app.router.resources():
        if resource is not catch_all:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _unenveloped(request: web.Request, response: web.HTTPException) -> str:
    """aiohttp answered by itself, before any handler: a request line whose target no route
    can match, not even the catch-all (`OPTIONS *`). Its text answer becomes the error shape
    of the client's format here (OpenAI's: such a target is no ingress's path); returns the
    request's id."""
    err = (
        NotFound(f"Unknown path {request.path}.")
        if response.status == 404
        else HttpError(response.status, response.reason)
    )
    body = err.body(ingress.of(request.path))
    response.body = body
    response.content_type = "application/json"
    response.headers["Content-Length"] = str(len(body))  # aiohttp counted the text already
    return _request_id(request)


_CATCH_ALL: web.AppKey[web.AbstractResource] = web.AppKey("catch_all")


async def _answer(
    request: web.Request, handler: Handler, rt: Runtime, call: Call
) -> web.StreamResponse:
    refused = access.refusal(request)  # the admin plane's token (gateway.admin.access)
    if refused is not None:
        return _error_response(refused, request)
    if request.path.startswith("/v1/"):  # with client keys configured, only their holders
        try:
            client = authenticate(rt.config, request.headers)
        except GatewayError as err:
            return _error_response(err, request)
        if client is not None:
            request[CLIENT] = call.client = client
    try:
        with rt.drain.tracking(rt.loop):
            response = await handler(request)
    except asyncio.CancelledError as exc:
        if not absorb_shutdown(exc):
            raise
        # Our own drain ended it: answer, rather than drop the connection.
        shutting = ShuttingDown("The gateway is shutting down; retry the request.")
        return _error_response(shutting, request)
    except GatewayError as err:
        return _error_response(err, request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        denied = MethodNotAllowed(
            f"Method {request.method} is not allowed on {request.path} (allowed: {allowed}).",
            headers={"Allow": allowed},
        )
        return _error_response(denied, request)
    except web.HTTPNotFound:
        return _error_response(NotFound(f"Unknown path {request.path}."), request)
    except web.HTTPException as exc:
        return _error_response(HttpError(exc.status, exc.reason), request)
    except Exception:
        _errors.error("unhandled", "unhandled error (request %s)", call.request_id, exc_info=True)
        return _error_response(Internal("Internal gateway error."), request)
    if not response.prepared and rt.drain.draining:
        response.force_close()  # let the client reconnect to a replica that stays
    return response


def _stamper(rt: Runtime) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def stamp(request: web.Request, response: web.StreamResponse) -> None:
        """Just before any answer's headers leave (replies, errors and streams alike): the
        request id, and the routing explanation when the caller asked for it — set here
        only."""
        try:
            call: Call | None = request[CALL]
        except KeyError:  # not enveloped
            call = None
        if call is not None:
            response.headers["x-request-id"] = call.request_id
            if call.explanation:
                response.headers[ROUTE_HEADER] = call.explanation
        elif isinstance(response, web.HTTPException):
            response.headers["x-request-id"] = _unenveloped(request, response)
        if rt.config.clients:  # gateway.limits: the key's x-ratelimit-*
            stamp_answer(request, response)

    return stamp


def _routes() -> list[tuple[str, str, Handler]]:
    return [
        *(("POST", p, proxy.handle) for p in proxy.OPERATIONS),
        ("GET", "/v1/models", admin.models),
        ("GET", "/healthz", admin.healthz),
        ("GET", "/readyz", admin.readyz),
        ("GET", "/admin/targets", admin.targets),
        ("POST", "/admin/reload", admin.reload_config),
        ("GET", "/admin/config", admin_routing.show_config),
        ("POST", "/admin/route", admin_routing.dry_run),
        ("GET", "/metrics", admin.metrics),
        ("POST", "/v1/feedback", admin.feedback),
        *dashboard.ROUTES,  # /ui, /ui/login, /ui/{asset}, /admin/traces, /admin/events
    ]


def _application(
    config: Config, runtime: Runtime, routes: list[tuple[str, str, Handler]]
) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_bytes + 1)
    app[RUNTIME] = runtime
    for method, path, handler in routes:
        # An `Expect` other than 100-continue is answered by our handler (JSON 417), not
        # aiohttp's text/plain one; GET routes answer HEAD too.
        if method == "GET":
            app.router.add_get(path, enveloped(handler, runtime), expect_handler=protocol.expect)
        else:
            wrapped = enveloped(handler, runtime)
            app.router.add_route(method, path, wrapped, expect_handler=protocol.expect)
    unrouted = enveloped(_unrouted, runtime)
    catch_all: web.AbstractResource | None = app.router.add_route(
        "*", "/{tail:.*}", unrouted, expect_handler=protocol.expect
    ).resource
    assert catch_all is not None
    app[_CATCH_ALL] = catch_all
    app.on_response_prepare.append(_stamper(runtime))
    return app


def build_app(
    config: Config, store: HealthStore | None = None, telemetry: Telemetry | None = None
) -> web.Application:
    """The gateway's app. With `server.admin_port` the admin plane (`is_admin_path`) is a
    second app, `app[ADMIN_APP]`, on the same runtime, which `Server` puts on its own
    listener; the main app then answers those paths 404."""
    runtime = Runtime(config, store, telemetry)
    register_health_gauges(runtime.telemetry.metrics, runtime.store, lambda: runtime.config.targets)
    routes = _routes()
    if runtime.admin_listener is None:
        app = _application(config, runtime, routes)
    else:
        app = _application(config, runtime, [r for r in routes if not access.is_admin_path(r[1])])
        admin_routes = [r for r in routes if access.is_admin_path(r[1])]
        app[ADMIN_APP] = _application(config, runtime, admin_routes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await runtime.start()
        watcher = None
        poll_s = config.server.config_poll_s
        if poll_s > 0 and await asyncio.to_thread(is_reloadable, config.source):
            watcher = ConfigWatcher(runtime, config.source, poll_s)
            watcher.start()
        yield
        if watcher is not None:
            await watcher.stop()
        await runtime.close()

    app.cleanup_ctx.append(lifecycle)
    return app
