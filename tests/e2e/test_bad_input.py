"""Bad input from callers, against a real gateway on loopback.

Every bad request gets its own status and OpenAI's error shape
`{"error": {"message", "type", "code", "param"}}` with a message that helps, plus an
`x-request-id`; it never reaches a provider; and the gateway keeps serving afterwards.
Credentials cross the gateway in one direction only: the provider's key goes up, nothing of the
client's goes up, and no provider key ever comes back down.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.edge.server import Server
from gateway.sim.faults import Fault
from gateway.sim.server import SimServer
from tests.builders import (
    CHAT,
    GatewayFactory,
    SimFactory,
    chat,
    closed_port,
    make_config,
    upstream_app,
)

LIMIT = 2048  # server.max_body_bytes for these tests
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
GOOD = chat()
ERROR_KEYS = {"message", "type", "code", "param"}


@dataclass
class Setup:
    sim: SimServer
    gw: Server

    @property
    def url(self) -> str:
        return self.gw.url


@pytest.fixture
async def setup(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Setup:
    sim = await sim_factory("sim-a")
    config = make_config(
        {"a": sim.base_url},
        {"chat": ["m1@a"], "other": ["m2@a"]},
        extra={"server": {"host": "127.0.0.1", "port": 0, "max_body_bytes": LIMIT}},
    )
    return Setup(sim, await gateway_factory(config))


def padded(size: int) -> bytes:
    """A valid chat request body of exactly `size` bytes."""
    base = orjson.dumps({**GOOD, "user": ""})
    assert size >= len(base)
    body = orjson.dumps({**GOOD, "user": "x" * (size - len(base))})
    assert len(body) == size
    return body


async def error_of(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The `error` object of an OpenAI-shaped error response (checked strictly)."""
    assert resp.content_type == "application/json", await resp.text()
    data = orjson.loads(await resp.read())
    assert set(data) == {"error"}, data
    err = data["error"]
    assert set(err) == ERROR_KEYS, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    return err  # type: ignore[no-any-return]


async def assert_still_serving(http: aiohttp.ClientSession, s: Setup) -> None:
    """A good request succeeds, and it is the only thing the sim has ever seen."""
    async with http.post(s.url + CHAT, json=GOOD) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-turnout-target"] == "m1@a"
        data = await resp.json()
    assert data["choices"][0]["message"]["content"]
    log = s.sim.state.attempts()
    assert len(log) == 1, log
    assert log[0]["request_body"]["messages"] == GOOD["messages"]


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: bytes | None
    status: int
    code: str | None
    param: str | None
    says: tuple[str, ...]  # substrings the message must contain
    content_type: str | None = "application/json"


CASES = [
    Case(
        "invalid_json",
        "POST",
        CHAT,
        b'{"model": "chat", "messages": [}',
        400,
        "invalid_json",
        None,
        ("not valid JSON", "position"),
    ),
    Case(
        "truncated_json",
        "POST",
        CHAT,
        b'{"model": "chat"',
        400,
        "invalid_json",
        None,
        ("not valid JSON",),
    ),
    Case(
        "invalid_utf8",
        "POST",
        CHAT,
        b'{"model": "chat\xff", "messages": []}',
        400,
        "invalid_json",
        None,
        ("not valid JSON", "UTF-8"),
    ),
    Case(
        "json_array",
        "POST",
        CHAT,
        orjson.dumps([GOOD]),
        400,
        "invalid_json",
        None,
        ("must be a JSON object",),
    ),
    Case(
        "json_string",
        "POST",
        CHAT,
        b'"hello"',
        400,
        "invalid_json",
        None,
        ("must be a JSON object",),
    ),
    Case("empty_body", "POST", CHAT, b"", 400, "invalid_json", None, ("empty", "JSON object")),
    Case(
        "missing_model",
        "POST",
        CHAT,
        orjson.dumps({"messages": GOOD["messages"]}),
        400,
        "missing_field",
        "model",
        ("model",),
    ),
    Case(
        "empty_model",
        "POST",
        CHAT,
        orjson.dumps({**GOOD, "model": ""}),
        400,
        "missing_field",
        "model",
        ("model",),
    ),
    Case(
        "model_not_string",
        "POST",
        CHAT,
        orjson.dumps({**GOOD, "model": 42}),
        400,
        "invalid_type",
        "model",
        ("'model' must be a string",),
    ),
    Case(
        "model_is_list",
        "POST",
        CHAT,
        orjson.dumps({**GOOD, "model": ["chat"]}),
        400,
        "invalid_type",
        "model",
        ("'model' must be a string",),
    ),
    Case(
        "unknown_model",
        "POST",
        CHAT,
        orjson.dumps({**GOOD, "model": "gpt-9"}),
        404,
        "model_not_found",
        "model",
        ("'gpt-9'", "does not exist", "chat", "other"),
    ),
    Case(
        "stream_not_bool",
        "POST",
        CHAT,
        orjson.dumps({**GOOD, "stream": "yes"}),
        400,
        "invalid_type",
        "stream",
        ("'stream'", "true or false"),
    ),
    Case(
        "stream_is_int",
        "POST",
        CHAT,
        orjson.dumps({**GOOD, "stream": 1}),
        400,
        "invalid_type",
        "stream",
        ("'stream'",),
    ),
    Case(
        "missing_messages",
        "POST",
        CHAT,
        orjson.dumps({"model": "chat"}),
        400,
        "missing_field",
        "messages",
        ("'messages'",),
    ),
    Case(
        "null_messages",
        "POST",
        CHAT,
        orjson.dumps({"model": "chat", "messages": None}),
        400,
        "missing_field",
        "messages",
        ("'messages'",),
    ),
    Case(
        "completions_missing_prompt",
        "POST",
        "/v1/completions",
        orjson.dumps({"model": "chat"}),
        400,
        "missing_field",
        "prompt",
        ("'prompt'",),
    ),
    Case(
        "embeddings_streamed",
        "POST",
        "/v1/embeddings",
        orjson.dumps({"model": "chat", "input": "x", "stream": True}),
        400,
        "invalid_value",
        "stream",
        ("Embeddings cannot be streamed",),
    ),
    Case(
        "over_limit_content_length",
        "POST",
        CHAT,
        padded(LIMIT + 1),
        413,
        "request_too_large",
        None,
        (str(LIMIT), "server.max_body_bytes"),
    ),
    Case(
        "text_plain",
        "POST",
        CHAT,
        orjson.dumps(GOOD),
        415,
        "unsupported_media_type",
        "Content-Type",
        ("application/json", "text/plain"),
        content_type="text/plain",
    ),
    Case(
        "form_urlencoded",
        "POST",
        CHAT,
        b"model=chat",
        415,
        "unsupported_media_type",
        "Content-Type",
        ("application/json", "application/x-www-form-urlencoded"),
        content_type="application/x-www-form-urlencoded",
    ),
    Case(
        "get_on_chat",
        "GET",
        CHAT,
        None,
        405,
        "method_not_allowed",
        None,
        ("GET", CHAT, "POST"),
        content_type=None,
    ),
    Case(
        "put_on_models",
        "PUT",
        "/v1/models",
        b"{}",
        405,
        "method_not_allowed",
        None,
        ("PUT", "/v1/models", "GET"),
    ),
    Case(
        "unknown_path",
        "POST",
        "/v1/nope",
        orjson.dumps(GOOD),
        404,
        "not_found",
        None,
        ("/v1/nope",),
    ),
    Case(
        "unknown_path_get",
        "GET",
        "/nowhere/at/all",
        None,
        404,
        "not_found",
        None,
        ("/nowhere/at/all",),
        content_type=None,
    ),
    Case(
        "trailing_slash",
        "POST",
        CHAT + "/",
        orjson.dumps(GOOD),
        404,
        "not_found",
        None,
        (CHAT + "/",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_gets_openai_error_and_gateway_stays_up(
    case: Case, setup: Setup, http: aiohttp.ClientSession
) -> None:
    headers = {} if case.content_type is None else {"Content-Type": case.content_type}
    async with http.request(
        case.method, setup.url + case.path, data=case.body, headers=headers
    ) as resp:
        assert resp.status == case.status, await resp.text()
        assert GENERATED_ID.match(resp.headers["x-request-id"]), resp.headers
        assert "x-turnout-target" not in resp.headers
        err = await error_of(resp)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == case.code
    assert err["param"] == case.param
    for fragment in case.says:
        assert fragment in err["message"], (fragment, err["message"])
    assert setup.sim.state.attempts() == []
    await assert_still_serving(http, setup)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", None],
    ids=["plain", "with_charset", "mixed_case", "absent"],
)
async def test_json_content_types_are_accepted(
    content_type: str | None, setup: Setup, http: aiohttp.ClientSession
) -> None:
    # skip_auto_headers keeps aiohttp from adding its own application/octet-stream
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with http.post(
        setup.url + CHAT,
        data=orjson.dumps(GOOD),
        headers=headers,
        skip_auto_headers=["Content-Type"],
    ) as resp:
        assert resp.request_info.headers.get("Content-Type") == content_type
        assert resp.status == 200, await resp.text()


async def test_error_response_echoes_callers_request_id(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    headers = {"X-Request-Id": "client-req-42", "Content-Type": "application/json"}
    async with http.post(setup.url + CHAT, data=b"{", headers=headers) as resp:
        assert resp.status == 400
        assert resp.headers["x-request-id"] == "client-req-42"
    async with http.get(setup.url + "/nope", headers=headers) as resp:
        assert resp.status == 404
        assert resp.headers["x-request-id"] == "client-req-42"


async def test_body_at_limit_is_accepted_one_byte_more_is_not(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    json_ct = {"Content-Type": "application/json"}
    async with http.post(setup.url + CHAT, data=padded(LIMIT), headers=json_ct) as resp:
        assert resp.status == 200, await resp.text()
    async with http.post(setup.url + CHAT, data=padded(LIMIT + 1), headers=json_ct) as resp:
        assert resp.status == 413
        assert (await error_of(resp))["code"] == "request_too_large"
    assert len(setup.sim.state.attempts()) == 1


async def test_chunked_body_over_limit_is_413(setup: Setup, http: aiohttp.ClientSession) -> None:
    body = padded(LIMIT * 2)
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 256):
            sent.append(i)
            yield body[i : i + 256]
            await asyncio.sleep(0)

    # An async generator has no length: aiohttp sends it with Transfer-Encoding: chunked.
    async with http.post(
        setup.url + CHAT, data=chunks(), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413, await resp.text()
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in resp.request_info.headers
        assert GENERATED_ID.match(resp.headers["x-request-id"])
        err = await error_of(resp)
    assert err["code"] == "request_too_large"
    assert str(LIMIT) in err["message"]
    assert sent  # the body really was streamed
    assert setup.sim.state.attempts() == []
    await assert_still_serving(http, setup)


async def test_chunked_body_under_limit_is_served(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    body = padded(LIMIT)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 300):
            yield body[i : i + 300]

    async with http.post(
        setup.url + CHAT, data=chunks(), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-turnout-target"] == "m1@a"


async def test_declared_oversized_body_is_rejected_without_waiting_for_it(setup: Setup) -> None:
    """Content-Length over the limit: 413 at once, before a single body byte is sent."""
    reader, writer = await asyncio.open_connection(setup.gw.host, setup.gw.port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n"
            b"\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(3):
            status_line = await reader.readline()
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 413 "), status_line
    assert b"x-request-id: " in head.lower()
    assert setup.sim.state.attempts() == []


async def test_405_names_allowed_methods_in_allow_header(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.get(setup.url + CHAT) as resp:
        assert resp.status == 405
        assert resp.headers.get("Allow") == "POST"


# --- request ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["abc-123", "req_2024.07.01:node-7", "A" * 128, "0"],
    ids=["simple", "all_safe_punctuation", "128_chars", "one_char"],
)
async def test_safe_request_id_is_echoed_and_forwarded(
    given: str, setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.post(setup.url + CHAT, json=GOOD, headers={"X-Request-Id": given}) as resp:
        assert resp.status == 200
        assert resp.headers["x-request-id"] == given
    [attempt] = setup.sim.state.attempts()
    assert attempt["headers"]["x-request-id"] == given


@pytest.mark.parametrize(
    "given",
    ["has spaces in it", "A" * 129, "x" * 300, "semi;colon", 'quote"d', "slash/ed", "ümlaut"],
    ids=["spaces", "129_chars", "300_chars", "semicolon", "quote", "slash", "non_ascii"],
)
async def test_unsafe_request_id_is_replaced(
    given: str, setup: Setup, http: aiohttp.ClientSession
) -> None:
    async with http.post(setup.url + CHAT, json=GOOD, headers={"X-Request-Id": given}) as resp:
        assert resp.status == 200
        rid = resp.headers["x-request-id"]
    assert rid != given
    assert GENERATED_ID.match(rid), rid
    [attempt] = setup.sim.state.attempts()
    assert attempt["headers"]["x-request-id"] == rid


async def test_generated_request_ids_are_unique(setup: Setup, http: aiohttp.ClientSession) -> None:
    ids = set()
    for _ in range(5):
        async with http.post(setup.url + CHAT, json=GOOD) as resp:
            assert resp.status == 200
            ids.add(resp.headers["x-request-id"])
    assert len(ids) == 5
    assert all(GENERATED_ID.match(i) for i in ids)


# --- credentials ---------------------------------------------------------------------------


async def test_client_credentials_never_reach_the_provider(
    setup: Setup, http: aiohttp.ClientSession
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {
        "Authorization": "Bearer client-secret-1",
        "api-key": "client-secret-2",
        "OpenAI-Organization": "org-client-secret-3",
        "X-Api-Key": "client-secret-4",
        "traceparent": traceparent,
    }
    for stream in (False, True):
        body = {**GOOD, "stream": stream}
        async with http.post(setup.url + CHAT, json=body, headers=headers) as resp:
            assert resp.status == 200
            await resp.read()
    log = setup.sim.state.attempts()
    assert len(log) == 2
    for attempt in log:
        seen = attempt["headers"]
        assert seen["authorization"] == "Bearer key-a"
        assert "x-api-key" not in seen
        assert not any("client-secret" in v for v in seen.values()), seen
        # the allowlist still lets tracing through, so the log really shows forwarded headers
        # The caller's trace continues: same trace id, our attempt's span as the parent.
    assert seen["traceparent"].split("-")[1] == traceparent.split("-")[1]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_provider_keys_never_come_back_in_a_502(
    stream: bool,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    failing = await sim_factory("sim-a")
    failing.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    locked = await sim_factory("sim-b", api_key="not-the-gateways-key")  # answers 401
    config = make_config(
        {
            "a": failing.base_url,
            "b": locked.base_url,
            "c": f"http://127.0.0.1:{closed_port()}/v1",
        },
        {"chat": ["m@a", "m@b", "m@c"]},
    )
    gw = await gateway_factory(config)
    body = {**GOOD, "stream": stream}
    headers = {"Authorization": "Bearer client-secret"}
    async with http.post(gw.url + CHAT, json=body, headers=headers) as resp:
        assert resp.status == 502, await resp.text()
        raw = await resp.read()
        err = await error_of(resp)
        response_headers = {k.lower(): v for k, v in resp.headers.items()}
    assert err["type"] == "upstream_error"
    assert err["code"] == "all_candidates_failed"
    assert response_headers["x-turnout-attempts"] == "3"
    assert GENERATED_ID.match(response_headers["x-request-id"])
    # the message says what happened on each target...
    for fragment in ("m@a: status 503", "m@b: status 401", "m@c: connect_refused"):
        assert fragment in err["message"], err["message"]
    # ...and nothing of any credential, in the body or in any header
    everything = raw.decode() + "\n".join(f"{k}: {v}" for k, v in response_headers.items())
    for secret in ("key-a", "key-b", "key-c", "client-secret", "Bearer"):
        assert secret not in everything, (secret, everything)
    # the providers did receive their own keys
    assert failing.state.attempts()[0]["headers"]["authorization"] == "Bearer key-a"
    assert locked.state.attempts()[0]["headers"]["authorization"] == "Bearer key-b"


async def test_a_providers_cookies_are_neither_kept_nor_passed_on(
    gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A provider's Set-Cookie (Cloudflare's `__cf_bm` on OpenAI's answers) is not stored and
    replayed on later requests, which come from other clients (it would tie them together),
    and does not reach the client."""
    cookies: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        await request.read()
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "m1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
        }
        resp = web.json_response(answer)
        resp.set_cookie("__cf_bm", f"tracker-{len(cookies)}", path="/", max_age=1800)
        return resp

    async with upstream_app(handler) as url:
        # A host name, not an IP: aiohttp's cookie jar takes no cookie from an IP address.
        url = url.replace("127.0.0.1", "localhost")
        gw = await gateway_factory(make_config({"a": url}, {"chat": ["m1@a"]}))
        for _ in range(3):
            async with http.post(gw.url + CHAT, json=GOOD) as resp:
                assert resp.status == 200
                assert "Set-Cookie" not in resp.headers
                await resp.read()
    assert cookies == [None, None, None]
