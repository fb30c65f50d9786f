"""The HTTP connection layer under the app: what happens before a request reaches `envelope`.

aiohttp answers some requests itself — ones its parser rejects (bad request line, mixed
Content-Length and Transfer-Encoding, bare LF, a header line too long, too many headers, an
unsupported Content-Encoding) — with a text/plain body that can echo the raw request bytes, and
logs them at ERROR with the bytes (so a caller's `Authorization` could land in the log). This
module's connection handler answers those in OpenAI's error shape instead, with a fixed message
per kind of fault, and logs one rate-limited line without any request content.

It also guards the connections themselves:
- a request whose headers have not fully arrived `header_timeout_s` after its first byte gets a
  408 and the connection is closed (slow-header clients cannot hold sockets for ever);
- above `max_connections` open client connections, a new one is answered 503 with Retry-After
  at once and closed (a clear refusal rather than running out of file descriptors).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import HttpVersion11, hdrs, web, web_protocol, web_server
from aiohttp import http_exceptions as hx
from aiohttp.web_request import BaseRequest

from gateway.edge.errors import error_body
from gateway.telemetry.logs import RateLimitedLog

log = logging.getLogger("turnout.http")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float
    max_connections: int


@dataclass(frozen=True, slots=True)
class HttpFault:
    """How one kind of malformed request is answered: fixed words, never the request's."""

    status: int
    message: str
    code: str
    param: str | None = None


# Most specific first: the first class that matches the exception wins.
_FAULTS: tuple[tuple[type[Exception], HttpFault], ...] = (
    (
        hx.ContentEncodingError,
        HttpFault(
            415,
            "Unsupported or corrupt Content-Encoding; send the body as identity, gzip or deflate.",
            "unsupported_content_encoding",
            "Content-Encoding",
        ),
    ),
    (
        hx.DecompressSizeError,
        HttpFault(413, "The decompressed request body is too large.", "request_too_large"),
    ),
    (
        hx.TransferEncodingError,
        HttpFault(400, "Invalid Transfer-Encoding or chunked body.", "bad_http_request"),
    ),
    (
        hx.ContentLengthError,
        HttpFault(400, "The body does not match its Content-Length.", "bad_http_request"),
    ),
    (
        hx.LineTooLong,
        HttpFault(431, "A request line or header is too long.", "request_header_too_large"),
    ),
    (hx.InvalidHeader, HttpFault(400, "Invalid request header.", "bad_http_request")),
    (hx.BadHttpMethod, HttpFault(400, "Not a valid HTTP request method.", "bad_http_request")),
    (hx.BadStatusLine, HttpFault(400, "Invalid HTTP request line.", "bad_http_request")),
    (hx.InvalidURLError, HttpFault(400, "Invalid request target (URL).", "bad_http_request")),
    (hx.BadHttpMessage, HttpFault(400, "Malformed HTTP request.", "bad_http_request")),
)
_BY_STATUS = {
    500: HttpFault(500, "Internal gateway error.", "internal_error"),
    504: HttpFault(504, "The request handler timed out.", "timeout"),
}
HEADER_TIMEOUT = HttpFault(408, "The request headers did not arrive in time.", "request_timeout")
TOO_MANY_CONNECTIONS = HttpFault(
    503, "The gateway has too many open connections; retry shortly.", "too_many_connections"
)
_TYPES = {500: "server_error", 503: "service_unavailable", 504: "timeout_error"}


def http_fault(status: int, exc: BaseException | None) -> HttpFault:
    """The answer for a request aiohttp could not hand to the app."""
    if exc is not None:
        for cls, fault in _FAULTS:
            if isinstance(exc, cls):
                return fault
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return HttpFault(status, "Malformed HTTP request.", "bad_http_request")


def fault_body(fault: HttpFault) -> bytes:
    kind = _TYPES.get(fault.status, "invalid_request_error")
    return error_body(fault.message, kind, fault.code, fault.param)


def raw_response(fault: HttpFault, extra: str = "") -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for when no request object exists
    (before the headers are complete, or before anything was read)."""
    body = fault_body(fault)
    reason = {408: "Request Timeout", 503: "Service Unavailable"}.get(fault.status, "Error")
    head = (
        f"HTTP/1.1 {fault.status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


_logs = RateLimitedLog(log)


class _Handler(web_protocol.RequestHandler):
    """aiohttp's connection handler with our error answers, logs and connection guards."""

    def init_guard(self, server: _Server) -> None:
        self._guard = server
        self._first_byte_at: float | None = None  # of a request whose headers are not all in
        self._busy = False  # a request is with the app: its body and answer have own limits
        self._counted = False

    # -- connections --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        guard = self._guard
        if guard.open_connections >= guard.limits.max_connections:
            _logs.warning(
                "too_many_connections",
                "refused a connection: %d open (server.max_connections)",
                guard.open_connections,
            )
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(raw_response(TOO_MANY_CONNECTIONS, "Retry-After: 1\r\n"))
            transport.close()
            return
        guard.open_connections += 1
        self._counted = True
        guard.watch()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._first_byte_at = None
        if self._counted:
            self._counted = False
            self._guard.open_connections -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._busy and self._first_byte_at is None and data:
            self._first_byte_at = self._guard.now()  # the server's sweep checks it
        super().data_received(data)

    # -- the app tells us when a request is its own (`request_started/finished` in envelope) --

    def request_started(self) -> None:
        self._busy = True
        self._first_byte_at = None

    def request_finished(self) -> None:
        self._busy = False

    def headers_late(self, now: float) -> bool:
        """The headers of the request under way are overdue (the server's sweep asks)."""
        first = self._first_byte_at
        return (
            first is not None
            and not self._busy
            and now - first >= self._guard.limits.header_timeout_s
        )

    def close_late(self) -> None:
        self._first_byte_at = None
        transport = self.transport
        if self._busy or transport is None or transport.is_closing():
            return
        _logs.warning(
            "header_timeout", "closed a connection: request headers did not arrive in time"
        )
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(raw_response(HEADER_TIMEOUT))
        transport.close()

    # -- requests aiohttp answers itself ------------------------------------------------------

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own error logs carry the exception text, which can quote request bytes:
        one rate-limited line with the kind of error instead."""
        exc = kw.get("exc_info")
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        _logs.warning(kind, "connection error in the HTTP layer (%s)", kind)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        fault = http_fault(status, exc)
        kind = type(exc).__name__ if exc is not None else str(status)
        if fault.status >= 500:  # our own failure: the traceback helps, the request does not
            _logs.error(kind, "request failed in the HTTP layer (%s)", kind, exc_info=exc)
        else:
            _logs.warning(kind, "malformed request answered %d (%s)", fault.status, kind)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started: no error answer can be sent")
        resp = web.Response(
            status=fault.status, body=fault_body(fault), content_type="application/json"
        )
        resp.force_close()
        return resp


class _Server(web_server.Server):
    """aiohttp's low-level server, making our connection handler. While it has connections, a
    sweep a few times per header timeout closes those whose headers are overdue: one timer
    for the server, not one per request."""

    limits: ConnectionLimits
    open_connections: int
    _sweep: asyncio.TimerHandle | None

    def __call__(self) -> web_protocol.RequestHandler:
        handler = _Handler(self, loop=self._loop, **self._kwargs)
        handler.init_guard(self)
        return handler

    def now(self) -> float:
        return self._loop.time()

    def watch(self) -> None:
        if self._sweep is None:
            period = max(0.05, min(1.0, self.limits.header_timeout_s / 4))
            self._sweep = self._loop.call_later(period, self._swept, period)

    def _swept(self, period: float) -> None:
        self._sweep = None
        now = self._loop.time()
        handlers = self.connections
        for handler in handlers:
            if isinstance(handler, _Handler) and handler.headers_late(now):
                handler.close_late()
        if handlers:
            self._sweep = self._loop.call_later(period, self._swept, period)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are `_Handler`s (`gateway.edge.server` uses it)."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        # Only `__call__` differs: the same object, making our handler for each connection.
        server.__class__ = _Server
        assert isinstance(server, _Server)
        server.limits = self._limits
        server.open_connections = 0
        server._sweep = None
        return server


EXPECTATION_FAILED = HttpFault(
    417, "Only 'Expect: 100-continue' is supported.", "expectation_failed", "Expect"
)


async def expect(request: web.Request) -> web.StreamResponse | None:
    """The routes' Expect handler: 100-continue as aiohttp does it, anything else a JSON 417
    (aiohttp's own answer is text/plain and echoes the header)."""
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None
    resp = web.Response(
        status=417, body=fault_body(EXPECTATION_FAILED), content_type="application/json"
    )
    resp.force_close()
    return resp


def request_started(request: web.BaseRequest) -> None:
    handler = request.protocol
    if isinstance(handler, _Handler):
        handler.request_started()


def request_finished(request: web.BaseRequest) -> None:
    handler = request.protocol
    if isinstance(handler, _Handler):
        handler.request_finished()
