"""OpenAI-format clients served by Anthropic-format providers, end to end (issue 15): the
official `openai` SDK against a real gateway whose route holds a real Anthropic-format sim
(`SimServer(format="anthropic")`, the Messages API), alone or behind an OpenAI-format one.

The sims share a voice, so both vendors answer a prompt with the same deterministic text: an
answer, a failover and a continuation across vendors can be compared word for word.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.config import load_data
from gateway.edge.server import Server
from gateway.sim import SimServer
from gateway.sim.answers import answer_text, answer_words
from gateway.sim.tools import id_hash
from tests.builders import (
    GatewayFactory,
    SimFactory,
    build_config,
    chat,
    error_of,
    post,
    set_fault,
    stream_text,
    upstream_app,
)
from tests.vendors import (
    N_WORDS,
    PRE_FIRST_BYTE,
    PROMPT,
    TOOLS,
    VOICE,
    answer,
    foreign_behind_openai,
    sdk,
)

FULL = answer_text(VOICE, "claude", PROMPT, N_WORDS)


async def gateway_with(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    *,
    primary: str | None = None,
    route: dict[str, Any] | None = None,
    **anthropic_kwargs: Any,
) -> tuple[SimServer, SimServer | None, Server]:
    """An Anthropic-format sim `a` (target claude@a), behind an OpenAI-format sim `o` (target
    claude@o) when `primary` is "openai"."""
    return await foreign_behind_openai(
        sim_factory,
        gateway_factory,
        fmt="anthropic",
        name="a",
        target="claude",
        model="claude",
        primary=primary,
        route=route,
        **anthropic_kwargs,
    )


async def test_an_openai_client_gets_a_claude_answer(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    a, _, gw = await gateway_with(sim_factory, gateway_factory)
    async with sdk(gw) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}], max_tokens=200
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == FULL
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-turnout-translation"] == "openai->anthropic"
    assert raw.headers["x-turnout-target"] == "claude@a"
    [seen] = a.state.attempts()
    assert seen["path"] == "/v1/messages"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-api-key"] == "key-a" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers  # neither the client's key nor a Bearer
    body = seen["request_body"]
    assert body["model"] == "claude" and body["max_tokens"] == 200
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]


async def test_a_stream_is_translated_and_ends_with_usage_and_done(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await gateway_with(sim_factory, gateway_factory, chunk_interval_ms=2)
    async with sdk(gw) as client:
        stream = await client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FULL
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    reply = await post(http, gw, chat(PROMPT, stream=True))
    assert reply.status == 200 and reply.headers["x-turnout-translation"] == "openai->anthropic"
    assert reply.body.endswith(b"data: [DONE]\n\n") and stream_text(reply.body) == FULL


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_round_trip_with_their_ids(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, stream: bool
) -> None:
    _, _, gw = await gateway_with(sim_factory, gateway_factory, tools="call")
    messages: list[Any] = [{"role": "user", "content": PROMPT}]
    async with sdk(gw) as client:
        if stream:
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model="chat",
                    messages=messages,
                    tools=TOOLS,
                    stream=True,  # type: ignore[arg-type]
                )
            ]
            calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
            call_id = calls[0].id
            name = calls[0].function.name if calls[0].function else None
            arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            done = await client.chat.completions.create(
                model="chat",
                messages=messages,
                tools=TOOLS,  # type: ignore[arg-type]
            )
            [call] = done.choices[0].message.tool_calls or []
            call_id, name = call.id, call.function.name  # type: ignore[union-attr]
            arguments = call.function.arguments  # type: ignore[union-attr]
            finish = done.choices[0].finish_reason
        assert call_id == f"toolu_{id_hash(PROMPT)}" and name == "search"
        assert orjson.loads(arguments) == {"query": PROMPT} and finish == "tool_calls"
        # The result goes back under the same id, and the answer is the sim's for it.
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "borders are lines"},
        ]
        final = await client.chat.completions.create(
            model="chat",
            messages=messages,
            tools=TOOLS,  # type: ignore[arg-type]
        )
    assert final.choices[0].message.content == answer_text(
        VOICE, "claude", "borders are lines", N_WORDS
    )


# A hang before the headers fails a stream over after headers_s; a non-streaming answer is
# given its whole total_s and not re-sent without a deadline (reliability.md): streams only.
@pytest.mark.parametrize(
    ("fault", "stream"),
    [(f, s) for f in PRE_FIRST_BYTE for s in (False, True)] + [({"mode": "hang"}, True)],
    ids=lambda v: v["mode"] + str(v.get("status", "")) if isinstance(v, dict) else str(v),
)
async def test_an_openai_outage_fails_over_to_claude(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fault: dict[str, Any], stream: bool
) -> None:
    a, o, gw = await gateway_with(sim_factory, gateway_factory, primary="openai")
    assert o is not None
    set_fault(o, fault)
    async with sdk(gw) as client:
        text = await answer(client, stream=stream)
    assert text == FULL
    assert len(a.state.attempts()) == 1 and len(o.state.attempts()) >= 1


async def test_an_overloaded_claude_529_fails_over_to_the_next_candidate(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a = await sim_factory("a", format="anthropic", n_words=N_WORDS, voice=VOICE)
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE)
    targets = {
        "claude@a": {"provider": "a", "model": "claude"},
        "claude@o": {"provider": "o", "model": "claude"},
    }
    routes = [{"alias": "chat", "candidates": ["claude@a", "claude@o"]}]
    gw = await gateway_factory(build_config({"a": a, "o": o}, routes, targets=targets))
    set_fault(a, {"mode": "status", "status": 529})
    reply = await post(http, gw, chat(PROMPT))
    assert reply.status == 200 and reply.headers["x-turnout-target"] == "claude@o"
    assert reply.json()["choices"][0]["message"]["content"] == FULL
    assert "x-turnout-translation" not in reply.headers  # the answer was not translated
    set_fault(a, {"mode": "error_event", "after_chunks": 0})  # overloaded, in the stream
    reply = await post(http, gw, chat(PROMPT, stream=True))
    assert reply.headers["x-turnout-target"] == "claude@o" and stream_text(reply.body) == FULL


async def test_a_stream_cut_on_openai_is_continued_on_claude_with_prefill(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a = await sim_factory("a", format="anthropic", n_words=N_WORDS, voice=VOICE, prefill="continue")
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE, chunk_interval_ms=5)
    targets = {
        "claude@o": {"provider": "o", "model": "claude"},
        "claude@a": {"provider": "a", "model": "claude", "supports": ["prefill"]},
    }
    routes = [{"alias": "chat", "candidates": ["claude@o", "claude@a"]}]
    gw = await gateway_factory(build_config({"a": a, "o": o}, routes, targets=targets))
    set_fault(o, {"mode": "cut", "after_chunks": 6})
    reply = await post(http, gw, chat(PROMPT, stream=True))
    assert reply.status == 200 and reply.body.endswith(b"data: [DONE]\n\n")
    assert stream_text(reply.body) == FULL  # every word once: the seam holds
    [seen] = a.state.attempts()
    last = seen["request_body"]["messages"][-1]
    assert last["role"] == "assistant"  # Claude was asked to go on from the delivered text
    delivered = last["content"][0]["text"]
    assert FULL.startswith(delivered) and delivered


@pytest.fixture
async def cut_after_a_space() -> AsyncIterator[str]:
    """An OpenAI-compatible upstream that streams the start of Claude's answer - up to and
    including the space before its third word - then closes, cut. Yields its base URL."""
    words = answer_words(VOICE, "claude", PROMPT, N_WORDS)
    head = words[0] + words[1] + " "  # ends with whitespace, as "\n\n" or "Hello, " do

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for delta in ({"role": "assistant", "content": ""}, {"content": head}):
            chunk = {"id": "chatcmpl-c", "choices": [{"index": 0, "delta": delta}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return resp  # closed without a finish: cut

    async with upstream_app(handler) as url:
        yield url


async def test_a_cut_after_whitespace_is_prefilled_without_it_and_joined_once(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    cut_after_a_space: str,
) -> None:
    """Anthropic refuses a prefill that ends with whitespace (the sim too): the delivered
    text goes without it, the continuation's leading space is not sent twice, and the target
    keeps its prefill (before: a 400, the target marked as refusing prefill for good, and
    the answer regenerated)."""
    a = await sim_factory("a", format="anthropic", n_words=N_WORDS, voice=VOICE, prefill="continue")
    data = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {
            "c": {"base_url": cut_after_a_space, "api_key": "k"},
            "a": {"base_url": a.base_url, "api_key": "key-a", "format": "anthropic"},
        },
        "targets": {
            "claude@c": {"provider": "c", "model": "claude"},
            "claude@a": {"provider": "a", "model": "claude", "supports": ["prefill"]},
        },
        "routes": [{"alias": "chat", "candidates": ["claude@c", "claude@a"]}],
    }
    gw = await gateway_factory(load_data(data, env={}))
    for _ in range(2):  # the second time too: prefill was not given up on
        reply = await post(http, gw, chat(PROMPT, stream=True))
        assert reply.status == 200 and reply.body.endswith(b"data: [DONE]\n\n")
        assert stream_text(reply.body) == FULL
    sent = [x["request_body"]["messages"][-1] for x in a.state.attempts()]
    assert [x["status"] for x in a.state.attempts()] == [200, 200]
    words = answer_words(VOICE, "claude", PROMPT, N_WORDS)
    assert [m["content"] for m in sent] == [[{"type": "text", "text": words[0] + words[1]}]] * 2


async def test_a_claude_caller_error_comes_back_in_openais_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await gateway_with(sim_factory, gateway_factory, prefill="reject")
    body = chat(PROMPT)
    body["messages"].append({"role": "assistant", "content": "Well,"})
    reply = await post(http, gw, body)
    err = error_of(reply, 400, None)
    assert err["type"] == "invalid_request_error" and "prefill" in err["message"]


async def test_strict_translation_skips_a_lossy_candidate_and_says_why(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, o, gw = await gateway_with(
        sim_factory, gateway_factory, primary="openai", route={"translation": "strict"}
    )
    assert o is not None
    set_fault(o, {"mode": "status", "status": 503})
    lossless = await post(http, gw, chat(PROMPT))  # nothing lost: Claude may take it
    assert lossless.headers["x-turnout-target"] == "claude@a"
    lossy = await post(http, gw, chat(PROMPT, seed=7), headers={"x-turnout-debug": "route"})
    assert lossy.status == 502 and len(a.state.attempts()) == 1  # never sent to Claude
    assert "lossy translation to anthropic: would drop seed" in lossy.headers["x-turnout-route"]
    only_claude = await gateway_factory(
        build_config(
            {"a": a},
            [{"alias": "chat", "candidates": ["claude@a"], "translation": "strict"}],
            targets={"claude@a": {"provider": "a", "model": "claude"}},
        )
    )
    refused = await post(http, only_claude, chat(PROMPT, seed=7))
    err = error_of(refused, 400, "no_capable_target")
    assert "would drop seed" in err["message"]


async def test_a_claude_target_is_no_candidate_for_embeddings(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await gateway_with(sim_factory, gateway_factory)
    reply = await post(http, gw, {"model": "chat", "input": "x"}, path="/v1/embeddings")
    err = error_of(reply, 400, "no_capable_target")
    assert "serves chat only" in err["message"]
