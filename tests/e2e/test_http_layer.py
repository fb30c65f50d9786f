"""The HTTP layer under the app (issue 12 items 6, 7, 9), over raw loopback sockets.

Requests aiohttp's parser rejects, corrupt or unsupported Content-Encoding, slow headers, slow
bodies and too many connections all get a JSON error in OpenAI's shape; the raw request bytes
(and so the caller's credentials) are never echoed nor logged, and a flood of bad requests
costs a few log lines, not one each."""

from __future__ import annotations

import asyncio
import gzip
import logging
from typing import Any

import orjson
import pytest

from gateway.edge.server import Server
from tests.builders import GatewayFactory, SimFactory, chat, make_config

SECRET = "sk-caller-SECRET-0123456789"
GOOD = orjson.dumps(chat())
SERVER = {"header_timeout_s": 0.5, "body_timeout_s": 0.5, "max_connections": 4}


@pytest.fixture
async def gw(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Server:
    sim = await sim_factory("sim-a")
    config = make_config(
        {"a": sim.base_url},
        {"chat": ["m1@a"]},
        extra={"server": {"host": "127.0.0.1", "port": 0, **SERVER}},
    )
    return await gateway_factory(config)


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response: its head, then Content-Length bytes of body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(ln.split(b":", 1)[1])
        for ln in head.split(b"\r\n")
        if ln.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def exchange(gw: Server, raw: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send raw bytes, return the one response the gateway sends (within `wait_s`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(wait_s):
            return await read_response(reader)
    finally:
        writer.close()


async def closes(gw: Server, raw: bytes, *, wait_s: float = 5.0) -> tuple[bytes, bytes]:
    """Send raw bytes: the one response, and what came after it until the gateway closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(wait_s):
            return await read_response(reader), await reader.read()
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, orjson.loads(body)


def request(extra_headers: str = "", body: bytes = GOOD, *, length: bool = True) -> bytes:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {SECRET}\r\n{extra_headers}"
    )
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def assert_openai_error(raw: bytes, status: int, code: str) -> dict[str, Any]:
    got, headers, body = parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"].startswith("application/json")
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["code"] == code and isinstance(error["message"], str)
    assert SECRET.encode() not in raw  # nothing of the request is echoed
    return dict(error)


PARSER_CASES = [
    pytest.param(
        request("Transfer-Encoding: chunked\r\n"), 400, "bad_http_request", id="cl-and-te"
    ),
    pytest.param(
        b"POST /v1/chat/completions HTTP/1.1\nHost: gw\nAuthorization: Bearer " + SECRET.encode()
        + b"\n\n",
        400, "bad_http_request", id="bare-lf",
    ),
    pytest.param(request("X-Big: " + "a" * 100_000 + "\r\n"), 431, "request_header_too_large",
                 id="header-line-too-long"),
    pytest.param(request("".join(f"X-H{i}: v\r\n" for i in range(500))), 400,
                 "bad_http_request", id="too-many-headers"),
    pytest.param(b"G\x00T / HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\n\r\n",
                 400, "bad_http_request", id="bad-method"),
    pytest.param(request("Content-Encoding: br\r\n"), 415, "unsupported_content_encoding",
                 id="brotli-not-installed"),
    pytest.param(request("Content-Encoding: zzz\r\n"), 415, "unsupported_content_encoding",
                 id="unknown-encoding"),
    pytest.param(request("Content-Encoding: gzip\r\n", b"\x1f\x8b\x08\x00garbage-not-gzip"),
                 415, "unsupported_content_encoding", id="corrupt-gzip"),
    pytest.param(request("Content-Encoding: deflate\r\n", b"not deflate at all"),
                 415, "unsupported_content_encoding", id="corrupt-deflate"),
    pytest.param(request("Expect: junk\r\n"), 417, "expectation_failed", id="unknown-expect"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "status", "code"), PARSER_CASES)
async def test_malformed_requests_get_openai_shaped_errors_without_echo(
    gw: Server, raw: bytes, status: int, code: str, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = await exchange(gw, raw)
    assert_openai_error(reply, status, code)
    assert not [r for r in caplog.records if SECRET in r.getMessage() or SECRET in str(r.exc_info)]
    # ... and the gateway still serves.
    ok = await exchange(gw, request("Connection: close\r\n"))
    assert parse(ok)[0] == 200


async def test_expect_100_continue_is_honoured(gw: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        head, _, body = request("Expect: 100-continue\r\nConnection: close\r\n").partition(
            b"\r\n\r\n"
        )
        writer.write(head + b"\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        assert parse(await read_response(reader))[0] == 200
    finally:
        writer.close()


@pytest.mark.parametrize("target", [b"*", b"http://gw/v1/nope"])
async def test_a_target_no_route_can_match_gets_an_openai_shaped_404(
    gw: Server, target: bytes
) -> None:
    """Answered by aiohttp before any handler (not even the catch-all route matches `*`):
    still OpenAI's shape, a request id, and a Content-Length that counts the JSON."""
    raw = await exchange(gw, b"OPTIONS " + target + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert_openai_error(raw, 404, "not_found")
    _, headers, _ = parse(raw)
    assert int(headers["content-length"]) == len(raw.partition(b"\r\n\r\n")[2])
    assert len(headers["x-request-id"]) == 32


async def test_an_unknown_expect_on_an_unknown_path_is_the_routes_json_417(gw: Server) -> None:
    raw = await exchange(
        gw, b"POST /v1/nope HTTP/1.1\r\nHost: gw\r\nExpect: foo\r\nContent-Length: 0\r\n\r\n"
    )
    assert_openai_error(raw, 417, "expectation_failed")


async def test_admin_reload_errors_are_openai_shaped(gw: Server) -> None:
    reply = await exchange(
        gw, b"POST /admin/reload HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n"
    )
    error = assert_openai_error(reply, 409, "not_reloadable")
    assert "Nothing to reload" in error["message"]
    assert parse(reply)[2]["status"] == "not_reloadable"  # the operators' field stays


async def test_a_valid_gzip_body_is_served(gw: Server) -> None:
    reply = await exchange(gw, request("Content-Encoding: gzip\r\nConnection: close\r\n",
                                       gzip.compress(GOOD)))  # fmt: skip
    status, _, body = parse(reply)
    assert status == 200 and body["object"] == "chat.completion"


async def test_a_flood_of_bad_requests_costs_a_few_log_lines(gw: Server, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(40):
        await exchange(gw, request("Transfer-Encoding: chunked\r\n"))
    ours = [r for r in caplog.records if r.name.startswith("turnout")]
    assert 1 <= len(ours) <= 6, [r.getMessage() for r in ours]
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= 30]


async def test_slow_headers_get_408_and_the_connection_is_closed(gw: Server) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    partial = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: "
    reply, after = await closes(gw, partial)
    assert 0.4 < loop.time() - started < 3.0
    assert_openai_error(reply, 408, "request_timeout")
    assert after == b""  # closed


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timer(gw: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        for _ in range(2):  # the second request comes after longer than header_timeout_s
            writer.write(request())
            await writer.drain()
            assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.8)
    finally:
        writer.close()


async def test_a_slow_body_gets_408(gw: Server) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    head = request(body=b"", length=False).rstrip(b"\r\n") + b"\r\nContent-Length: 100\r\n\r\n"
    reply = await exchange(gw, head + b'{"model":')
    assert 0.4 < loop.time() - started < 3.0
    assert_openai_error(reply, 408, "request_timeout")
    # Not reused: the rest of that body must not be read as a next request. (aiohttp still
    # drains an unread body for up to 10 s before it closes, so the client reads the answer.)
    assert parse(reply)[1]["connection"] == "close"


async def test_connections_over_the_cap_get_503_and_the_gateway_recovers(gw: Server) -> None:
    held = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(SERVER["max_connections"])]  # fmt: skip
    await asyncio.sleep(0.05)
    reply, after = await closes(gw, request())
    error = assert_openai_error(reply, 503, "too_many_connections")
    assert after == b""
    assert error["type"] == "service_unavailable"
    assert parse(reply)[1]["retry-after"] == "1"
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.1)
    ok = await exchange(gw, request("Connection: close\r\n"))
    assert parse(ok)[0] == 200
