"""The simulated provider: an aiohttp app plus a small server wrapper.

A sim speaks one wire format (``SimSettings.format``): OpenAI's (chat completions,
completions, embeddings, models), Anthropic's (the Messages API and models) or Gemini's
(``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``, models); any other
``/v1`` (``/v1beta``) path is a 404 in that format's error shape. Its endpoints (``/v1/...``) are logged and
subject to the current fault; the control API (``/_sim/...``) is neither. The server runs with handler cancellation so that a client going
away cancels the handler at once and the log shows ``client_disconnected`` promptly.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from gateway.sim import (
    anthropic_endpoints,
    delivery,
    endpoints,
    formats,
    gemini_endpoints,
    gemini_wire,
)
from gateway.sim.faults import Fault
from gateway.sim.state import DEFAULT_MODELS, Attempt, SimSettings, SimState

STATE_KEY = web.AppKey("turnout_sim_state", SimState)
MAX_BODY_BYTES = 32 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_sim_app(state: SimState) -> web.Application:
    """An aiohttp application serving the endpoints of the sim's format and the control API."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    if state.settings.format == "anthropic":
        app.router.add_post("/v1/messages", _endpoint(anthropic_endpoints.messages))
        app.router.add_get("/v1/models", _endpoint(anthropic_endpoints.list_models))
    elif state.settings.format == "gemini":
        for version in gemini_wire.API_VERSIONS:
            models = f"/{version}/models"
            app.router.add_post(models + "/{model}:generateContent", _gemini(stream=False))
            app.router.add_post(models + "/{model}:streamGenerateContent", _gemini(stream=True))
            app.router.add_get(models, _endpoint(gemini_endpoints.list_models))
        app.router.add_route("*", f"/{gemini_wire.API_VERSION}/{{tail:.*}}", _not_found)
    else:
        app.router.add_post("/v1/chat/completions", _endpoint(endpoints.chat_completions))
        app.router.add_post("/v1/completions", _endpoint(endpoints.completions))
        app.router.add_post("/v1/embeddings", _endpoint(endpoints.embeddings))
        app.router.add_get("/v1/models", _endpoint(endpoints.list_models))
    app.router.add_route("*", "/v1/{tail:.*}", _not_found)
    app.router.add_get("/_sim/fault", _get_fault)
    app.router.add_put("/_sim/fault", _put_fault)
    app.router.add_get("/_sim/log", _get_log)
    app.router.add_delete("/_sim/log", _delete_log)
    return app


def _json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")


def _error_response(status: int, message: str, param: str | None = None) -> web.Response:
    reply = endpoints.error_reply(status, message, param=param)
    return web.Response(status=status, body=reply.body, content_type="application/json")


def _parse_body(raw: bytes) -> tuple[dict[str, Any], Any, str | None]:
    """(body as a dict, what to log, error message or None)."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace")
        return {}, text, "We could not parse the JSON body of your request."
    if not isinstance(parsed, dict):
        return {}, parsed, "The request body must be a JSON object."
    return parsed, parsed, None


def _endpoint(endpoint: endpoints.Endpoint) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _handle(request, endpoint)

    return handler


def _gemini(*, stream: bool) -> Handler:
    """Gemini's generateContent (``stream``: streamGenerateContent): the model and streaming
    are in the URL, not the body."""

    async def handler(request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        how: gemini_endpoints.Stream = None
        if stream:
            how = "sse" if request.query.get("alt") == "sse" else "array"
        endpoint = functools.partial(gemini_endpoints.generate, model=model, stream=how)
        return await _handle(request, endpoint, (model, how == "sse"))

    return handler


async def _handle(
    request: web.Request,
    endpoint: endpoints.Endpoint,
    addressed: tuple[str, bool] | None = None,
) -> web.StreamResponse:
    """Log the attempt, apply the fault, answer. `addressed`: (model, stream) when the URL
    says them (else the body does)."""
    state = request.app[STATE_KEY]
    body: dict[str, Any] = {}
    logged: Any = None
    body_size = 0
    parse_error: str | None = None
    if request.method == "POST":
        raw = await request.read()
        body_size = len(raw)
        body, logged, parse_error = _parse_body(raw)
    model, stream = body.get("model"), body.get("stream") is True
    if addressed is not None:
        model, stream = addressed
    fault = state.take_fault()
    attempt = state.begin(
        path=request.path,
        query=request.query_string,
        model=model if isinstance(model, str) else None,
        stream=stream,
        fault=fault.mode,
        headers=request.headers,
        request_body=logged,
        body_size=body_size,
    )
    task = asyncio.current_task()
    if task is not None:
        state.track(task)
    try:
        return await _respond(request, state, fault, attempt, endpoint, body, parse_error)
    except asyncio.CancelledError:
        if state.closing:
            attempt.finish("server_closed")
        else:
            attempt.disconnected()
        raise
    except ConnectionError:
        attempt.disconnected()
        return web.Response()
    finally:
        if task is not None:
            state.untrack(task)
        attempt.finish("error")


async def _respond(
    request: web.Request,
    state: SimState,
    fault: Fault,
    attempt: Attempt,
    endpoint: endpoints.Endpoint,
    body: dict[str, Any],
    parse_error: str | None,
) -> web.StreamResponse:
    settings = state.settings
    fmt = settings.format
    headers = {"x-sim-name": settings.name, **formats.answer_headers(fmt)}
    await delivery.pause(settings.latency_ms / 1000)
    if fault.mode == "hang":
        attempt.outcome = "hang"
        await delivery.wait_for_client_to_leave(request)
        attempt.disconnected()
        return web.Response()
    if fault.mode == "reset":
        delivery.reset_connection(request)
        attempt.finish("reset")
        return web.Response()
    if fault.mode == "status":
        return await _send_status_fault(request, attempt, fault, settings, headers)
    if settings.api_key is not None:
        denied = formats.auth_error(fmt, request.headers, settings.api_key, request.query)
        if denied is not None:
            return await delivery.send_json(request, attempt, denied.status, denied.body, headers)
    if parse_error is not None:
        reply = formats.error_reply(fmt, 400, parse_error)
    else:
        reply = endpoint(settings, body)
    framing = formats.framing(fmt, fault)
    if reply.events is not None:
        interval_s = settings.chunk_interval_ms / 1000
        return await delivery.send_stream(
            request, attempt, reply.events, headers, fault, interval_s, framing
        )
    return await delivery.send_json(
        request, attempt, reply.status, reply.body, headers, fault, framing
    )


async def _send_status_fault(
    request: web.Request,
    attempt: Attempt,
    fault: Fault,
    settings: SimSettings,
    headers: dict[str, str],
) -> web.StreamResponse:
    message = fault.message or f"sim {settings.name}: simulated HTTP {fault.status}"
    reply, more = formats.status_fault(
        settings.format, fault.status, message, fault.code, fault.retry_after
    )
    return await delivery.send_json(request, attempt, fault.status, reply.body, headers | more)


async def _not_found(request: web.Request) -> web.StreamResponse:
    fmt = request.app[STATE_KEY].settings.format
    reply = formats.error_reply(fmt, 404, f"Unknown request URL: {request.method} {request.path}")
    return web.Response(status=404, body=reply.body, content_type="application/json")


async def _get_fault(request: web.Request) -> web.StreamResponse:
    return _json_response(request.app[STATE_KEY].fault.to_json())


async def _put_fault(request: web.Request) -> web.StreamResponse:
    try:
        fault = Fault.from_json(orjson.loads(await request.read()))
    except ValueError as exc:  # includes orjson.JSONDecodeError
        return _error_response(400, f"bad fault: {exc}")
    request.app[STATE_KEY].set_fault(fault)
    return _json_response(fault.to_json())


async def _get_log(request: web.Request) -> web.StreamResponse:
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return _error_response(400, "'since' must be an integer", param="since")
    return _json_response(request.app[STATE_KEY].attempts(since))


async def _delete_log(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    cleared = len(state.log)
    state.clear_log()
    return _json_response({"cleared": cleared})


class SimServer:
    """A sim listening on a real socket. ``state`` may be changed in-process at any time."""

    def __init__(
        self,
        name: str = "sim",
        *,
        latency_ms: float = 0.0,
        chunk_interval_ms: float = 0.0,
        n_words: int = 12,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
        embedding_dims: int = 8,
        voice: str = "",
        prefill: str = "ignore",
        format: str = "openai",
        tools: str = "ignore",
        fault: Fault | None = None,
        state: SimState | None = None,
    ) -> None:
        if state is None:
            settings = SimSettings(
                name=name,
                latency_ms=latency_ms,
                chunk_interval_ms=chunk_interval_ms,
                n_words=n_words,
                models=tuple(models),
                api_key=api_key,
                embedding_dims=embedding_dims,
                voice=voice,
                prefill=prefill,
                format=format,
                tools=tools,
            )
            state = SimState(settings=settings)
        if fault is not None:
            state.set_fault(fault)
        self.state = state
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (a wildcard bind address is shown as 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``url`` + ``/v1`` (Gemini: ``/v1beta``): a provider's ``base_url`` and the OpenAI
        SDK's (the Anthropic and Google SDKs take ``url``: they add their paths themselves)."""
        if self.state.settings.format == "gemini":
            return f"{self.url}/{gemini_wire.API_VERSION}"
        return self.url + "/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        """Listen on ``host:port`` (port 0 picks a free one, see ``.port``); returns self."""
        if self._runner is not None:
            raise RuntimeError("sim already started")
        self.state.closing = False
        runner = web.AppRunner(
            build_sim_app(self.state), handler_cancellation=True, access_log=None
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])
        return self

    async def close(self) -> None:
        """Stop listening and end every request in flight (hung ones included)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.cancel_in_flight()
        await runner.cleanup()

    async def __aenter__(self) -> SimServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
