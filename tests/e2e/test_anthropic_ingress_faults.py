"""The Anthropic ingress when things go wrong (issue 15 item 2): failover before the first
content event invisible to the `anthropic` SDK, Anthropic's 529 as a provider failure, errors
in Anthropic's shape with the gateway's statuses, an honest in-band `event: error` when a
committed stream fails, `translation: strict`, and the usage reaching the metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from aiohttp import web

from gateway.config import load_data
from gateway.config.clients import digest
from gateway.edge.server import Server
from gateway.sim import SimServer
from ops.faults.harness import sse_events
from tests.builders import (
    GatewayFactory,
    SimFactory,
    build_config,
    post,
    scrape,
    set_fault,
    upstream_app,
    value,
)
from tests.e2e.test_anthropic_ingress import (
    FULL,
    MESSAGES,
    N_WORDS,
    PROMPT,
    VOICE,
    ask,
    async_sdk,
    text_of,
    user,
)


@pytest.fixture
async def usageless() -> AsyncIterator[str]:
    """An OpenAI-compatible upstream whose stream has a role chunk, text, a finish chunk - no
    usage, no `[DONE]` - then closes. Yields its base URL."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        head = {"id": "chatcmpl-u", "object": "chat.completion.chunk", "model": "claude"}
        for delta, finish in (
            ({"role": "assistant"}, None),
            ({"content": "hi"}, None),
            ({}, "stop"),
        ):
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
        await resp.write_eof()
        return resp

    async with upstream_app(handler) as url:
        yield url


PRE_FIRST_BYTE = [
    {"mode": "status", "status": 503},
    {"mode": "status", "status": 529},
    {"mode": "status", "status": 429},
    {"mode": "reset"},
    {"mode": "malformed", "after_chunks": 0},
    {"mode": "cut", "after_chunks": 0},
    {"mode": "error_event", "after_chunks": 0},
]
ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
}


async def pair(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, first: str, second: str, **route: Any
) -> tuple[SimServer, SimServer, Server]:
    """Route `chat`: claude@one (a sim speaking `first`), then claude@two (speaking `second`)."""
    one = await sim_factory("one", format=first, n_words=N_WORDS, voice=VOICE, chunk_interval_ms=5)
    two = await sim_factory("two", format=second, n_words=N_WORDS, voice=VOICE)
    targets = {f"claude@{n}": {"provider": n, "model": "claude"} for n in ("one", "two")}
    routes = [{"alias": "chat", "candidates": ["claude@one", "claude@two"], **route}]
    gw = await gateway_factory(build_config({"one": one, "two": two}, routes, targets=targets))
    return one, two, gw


def anthropic_error(reply_status: int, status: int, body: bytes, kind: str) -> str:
    assert reply_status == status, (reply_status, body)
    obj = orjson.loads(body)
    assert set(obj) == {"type", "error"} and obj["type"] == "error", obj
    assert set(obj["error"]) == {"type", "message"} and obj["error"]["type"] == kind, obj
    assert obj["error"]["type"] in ERROR_TYPES
    return str(obj["error"]["message"])


@pytest.mark.parametrize(
    ("first", "second"), [("openai", "anthropic"), ("anthropic", "openai"), ("gemini", "openai")]
)
@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
@pytest.mark.parametrize(
    "fault", PRE_FIRST_BYTE, ids=lambda f: f["mode"] + str(f.get("status", ""))
)
async def test_a_fault_before_the_first_content_fails_over_invisibly(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    first: str,
    second: str,
    stream: bool,
    fault: dict[str, Any],
) -> None:
    if fault["mode"] == "error_event" and not stream:
        pytest.skip("an in-band error is a stream's")
    one, two, gw = await pair(sim_factory, gateway_factory, first, second)
    set_fault(one, fault)
    message = await ask(gw, sync=False, stream=stream, messages=user(PROMPT))
    assert text_of(message) == FULL and message.stop_reason == "end_turn"
    assert len(one.state.attempts()) == 1 and len(two.state.attempts()) == 1


async def test_a_hang_before_the_headers_fails_a_stream_over(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    one, _, gw = await pair(sim_factory, gateway_factory, "anthropic", "openai")
    set_fault(one, {"mode": "hang"})
    message = await ask(gw, sync=False, stream=True, messages=user(PROMPT))
    assert text_of(message) == FULL


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_a_stream_cut_after_commit_ends_with_an_anthropic_error_event(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession, fmt: str
) -> None:
    one, two, gw = await pair(sim_factory, gateway_factory, fmt, "anthropic")
    set_fault(one, {"mode": "cut", "after_chunks": 8})
    body = {"model": "chat", "max_tokens": 64, "messages": user(PROMPT), "stream": True}
    reply = await post(http, gw, body, path=MESSAGES)
    events = sse_events(reply.body)
    assert reply.status == 200 and events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]  # never presented as complete
    err = orjson.loads(events[-1][1])
    assert err["type"] == "error" and err["error"]["type"] == "api_error"
    assert "incomplete" in err["error"]["message"]
    assert two.state.attempts() == []  # not continued: the Anthropic ingress does not continue
    async with async_sdk(gw) as client:
        set_fault(one, {"mode": "cut", "after_chunks": 8})
        with pytest.raises(anthropic.APIStatusError):
            async with client.messages.stream(
                model="chat", max_tokens=64, messages=user(PROMPT)
            ) as events_:
                await events_.get_final_message()


async def test_a_translated_stream_that_ends_without_done_still_ends_as_the_messages_api_does(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The OpenAI target finished but closed without `[DONE]`: the client still gets the
    finish (`message_delta` with its stop reason) before `message_stop`, once each."""
    one, two, gw = await pair(sim_factory, gateway_factory, "openai", "anthropic")
    set_fault(one, {"mode": "no_done"})
    body = {"model": "chat", "max_tokens": 64, "messages": user(PROMPT), "stream": True}
    reply = await post(http, gw, body, path=MESSAGES)
    events = [(name, orjson.loads(data)) for name, data in sse_events(reply.body)]
    names = [name for name, _ in events]
    assert reply.status == 200 and names[-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert names.count("message_delta") == 1 and names.count("message_stop") == 1
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == FULL and two.state.attempts() == []


async def test_a_stream_without_usage_or_done_still_gets_its_finish(
    gateway_factory: GatewayFactory, http: aiohttp.ClientSession, usageless: str
) -> None:
    """An OpenAI-compatible server that sends no usage and closes after its finish chunk
    without `[DONE]`: the finish still reaches the client (`message_delta`, end_turn) before
    `message_stop` (before, the stream ended with `message_stop` alone)."""
    config = load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "providers": {"o": {"base_url": usageless, "api_key": "k"}},
            "routes": [{"alias": "chat", "candidates": ["claude@o"]}],
        },
        env={},
    )
    gw = await gateway_factory(config)
    body = {"model": "chat", "max_tokens": 64, "messages": user(PROMPT), "stream": True}
    reply = await post(http, gw, body, path=MESSAGES)
    names = [name for name, _ in sse_events(reply.body)]
    assert reply.status == 200
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"], names


async def test_a_bad_request_is_an_anthropic_400_and_an_unknown_model_a_404(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    one, two, gw = await pair(sim_factory, gateway_factory, "openai", "anthropic")
    missing = await post(http, gw, {"model": "chat", "messages": user(PROMPT)}, path=MESSAGES)
    assert "max_tokens" in anthropic_error(
        missing.status, 400, missing.body, "invalid_request_error"
    )
    json_type = {"Content-Type": "application/json"}
    async with http.post(gw.url + MESSAGES, data=b"{not json", headers=json_type) as r:
        anthropic_error(r.status, 400, await r.read(), "invalid_request_error")
    async with async_sdk(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as bad:
            await client.messages.create(model="chat", max_tokens=0, messages=user(PROMPT))
        with pytest.raises(anthropic.NotFoundError) as unknown:
            await client.messages.create(model="nope", max_tokens=9, messages=user(PROMPT))
    assert bad.value.status_code == 400 and unknown.value.status_code == 404
    assert isinstance(unknown.value.body, dict)
    assert unknown.value.body["error"]["type"] == "not_found_error"
    assert one.state.attempts() == [] and two.state.attempts() == []  # refused at the edge
    chat = await post(http, gw, {"model": "nope", "messages": user(PROMPT)})
    assert set(chat.json()) == {"error"}  # the OpenAI ingress keeps OpenAI's shape


async def test_an_upstream_400_comes_back_in_anthropics_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await pair(sim_factory, gateway_factory, "openai", "anthropic", max_attempts=1)
    body = {"model": "chat", "max_tokens": 9, "messages": [{"role": "user", "content": []}]}
    body["messages"] = []  # the OpenAI sim refuses an empty conversation with its own 400
    reply = await post(http, gw, body, path=MESSAGES)
    assert "messages" in anthropic_error(reply.status, 400, reply.body, "invalid_request_error")


async def test_every_gateway_failure_is_in_anthropics_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    one, two, gw = await pair(sim_factory, gateway_factory, "openai", "anthropic")
    set_fault(one, {"mode": "status", "status": 503})
    set_fault(two, {"mode": "status", "status": 529})
    body = {"model": "chat", "max_tokens": 9, "messages": user(PROMPT)}
    reply = await post(http, gw, body, path=MESSAGES)
    message = anthropic_error(reply.status, 502, reply.body, "api_error")
    assert "claude@one: status 503" in message and "claude@two: status 529" in message
    async with http.get(gw.url + MESSAGES) as r:  # the method too
        anthropic_error(r.status, 405, await r.read(), "invalid_request_error")


async def test_an_unknown_key_is_an_anthropic_401_and_x_api_key_is_accepted(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    s = await sim_factory("s", format="openai", n_words=N_WORDS, voice=VOICE)
    key = "tk-anthropic-client-0123456789"
    data = {
        "providers": {"s": {"base_url": s.base_url, "api_key": "key-s"}},
        "targets": {"claude@s": {"provider": "s", "model": "claude"}},
        "routes": [{"alias": "chat", "candidates": ["claude@s"]}],
        "clients": {"agent": {"key_sha256": digest(key)}},
    }
    gw = await gateway_factory(load_data(data, env={}))
    async with async_sdk(gw, key="tk-nobody-0123456789abcdef") as client:
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await client.messages.create(model="chat", max_tokens=9, messages=user(PROMPT))
    assert denied.value.status_code == 401
    assert isinstance(denied.value.body, dict)
    assert denied.value.body["error"]["type"] == "authentication_error"
    assert "tk-nobody" not in str(denied.value.body)  # never echoed
    async with async_sdk(gw, key=key) as client:  # the SDK sends it as x-api-key
        message = await client.messages.create(model="chat", max_tokens=9, messages=user(PROMPT))
    assert text_of(message) == FULL
    assert "x-api-key" not in s.state.attempts()[0]["headers"]  # the client's key stays here


async def test_betas_go_to_anthropic_and_its_rate_limits_come_back_but_not_to_a_limited_key(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a = await sim_factory("a", format="anthropic", n_words=N_WORDS, voice=VOICE)
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE)
    free, limited = "tk-free-client-0123456789", "tk-limited-client-0123456789"
    data = {
        "providers": {
            "a": {"base_url": a.base_url, "api_key": "key-a", "format": "anthropic"},
            "o": {"base_url": o.base_url, "api_key": "key-o"},
        },
        "targets": {
            "claude@a": {"provider": "a", "model": "claude"},
            "claude@o": {"provider": "o", "model": "claude"},
        },
        "routes": [
            {"alias": "chat", "candidates": ["claude@a"]},
            {"alias": "other", "candidates": ["claude@o"]},
        ],
        "clients": {
            "free": {"key_sha256": digest(free)},
            "limited": {"key_sha256": digest(limited), "limits": {"rpm": 100}},
        },
    }
    gw = await gateway_factory(load_data(data, env={}))
    beta = "prompt-caching-2024-07-31,output-128k-2025-02-19"
    body = {"model": "chat", "max_tokens": 9, "messages": user(PROMPT)}
    reply = await post(http, gw, body, {"x-api-key": free, "anthropic-beta": beta}, MESSAGES)
    assert reply.status == 200
    assert a.state.attempts()[0]["headers"]["anthropic-beta"] == beta
    assert reply.headers["anthropic-ratelimit-requests-remaining"] == "3999"
    assert reply.headers["anthropic-ratelimit-requests-limit"] == "4000"
    # A key with its own limits sees those, never the provider account's.
    mine = await post(http, gw, body, {"x-api-key": limited}, MESSAGES)
    assert mine.status == 200 and mine.headers["x-ratelimit-limit-requests"] == "100"
    assert not [h for h in mine.headers if h.startswith("anthropic-ratelimit-")]
    # An OpenAI-format target is not told about Anthropic's betas.
    other = {**body, "model": "other"}
    served = await post(http, gw, other, {"x-api-key": free, "anthropic-beta": beta}, MESSAGES)
    assert served.status == 200 and "anthropic-beta" not in o.state.attempts()[0]["headers"]


async def test_strict_translation_skips_a_lossy_openai_candidate(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    one, two, gw = await pair(
        sim_factory, gateway_factory, "anthropic", "openai", translation="strict"
    )
    set_fault(one, {"mode": "status", "status": 529})
    lossless = {"model": "chat", "max_tokens": 9, "messages": user(PROMPT)}
    reply = await post(http, gw, lossless, path=MESSAGES)
    assert reply.headers["x-turnout-target"] == "claude@two"
    assert reply.headers["x-turnout-translation"] == "anthropic->openai"
    set_fault(one, {"mode": "status", "status": 529})
    lossy = {**lossless, "top_k": 3}
    refused = await post(http, gw, lossy, path=MESSAGES, headers={"x-turnout-debug": "route"})
    anthropic_error(refused.status, 502, refused.body, "api_error")
    assert "lossy translation to openai: would drop top_k" in refused.headers["x-turnout-route"]
    assert len(two.state.attempts()) == 1  # never sent the lossy one


@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
async def test_anthropic_usage_reaches_the_token_metrics(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    stream: bool,
) -> None:
    one, _, gw = await pair(sim_factory, gateway_factory, "anthropic", "openai")
    message = await ask(gw, sync=False, stream=stream, messages=user(PROMPT))
    async with http.get(gw.url + "/metrics") as r:
        samples = scrape(await r.text())
    tokens = "gen_ai_client_token_usage_total"
    used = message.usage
    assert value(samples, tokens, target="claude@one", gen_ai_token_type="input") == (
        used.input_tokens
    )
    assert value(samples, tokens, target="claude@one", gen_ai_token_type="output") == (
        used.output_tokens
    )
    assert one.state.attempts()[0]["path"] == "/v1/messages"


async def test_paths_under_v1_messages_answer_in_anthropics_shape_and_others_do_not(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await pair(sim_factory, gateway_factory, "openai", "anthropic")
    async with http.post(gw.url + "/v1/messages/count_tokens", json={}) as r:
        anthropic_error(r.status, 404, await r.read(), "not_found_error")
    async with http.post(gw.url + "/v1/messagesx", json={}) as r:
        assert r.status == 404 and set(orjson.loads(await r.read())) == {"error"}
