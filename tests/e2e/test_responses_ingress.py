"""Responses API clients calling Turnout (`POST /v1/responses`, issue 15 item 3), end to end:
the official `openai` SDK's `client.responses.create`, sync and async, streaming and not,
against a real gateway whose route holds a real sim of each wire format - OpenAI's (Chat
Completions), Anthropic's or Gemini's: a Responses request is translated for every target.

The sims share a voice, so every format answers a prompt with the same deterministic text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from openai.types.responses import Response

from gateway.config import load_data
from gateway.edge.server import Server
from gateway.sim import SimServer
from gateway.sim.answers import answer_text
from gateway.sim.tools import id_hash
from ops.faults.harness import sse_events
from tests.builders import GatewayFactory, SimFactory, build_config, post, set_fault, upstream_app

PROMPT = "what crosses the border"
N_WORDS = 16
VOICE = "model-x"
FULL = answer_text(VOICE, "m", PROMPT, N_WORDS)
RESPONSES = "/v1/responses"
FORMATS = ["openai", "anthropic", "gemini"]
SIM_PATH = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/m:generateContent",
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "search",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


async def served_by(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fmt: str, **sim: Any
) -> tuple[SimServer, Server]:
    """A gateway whose route `chat` holds one target, m@s, on a sim speaking `fmt`."""
    s = await sim_factory("s", format=fmt, n_words=N_WORDS, voice=VOICE, **sim)
    targets = {"m@s": {"provider": "s", "model": "m"}}
    routes = [{"alias": "chat", "candidates": ["m@s"]}]
    return s, await gateway_factory(build_config({"s": s}, routes, targets=targets))


async def ask(gw: Server, *, sync: bool, stream: bool, **kwargs: Any) -> Response:
    """One `responses.create` by the SDK; the response (a stream's: its last event's, or -
    async - what the SDK's own accumulator, `responses.stream`, made of the events)."""
    args: dict[str, Any] = {"model": "chat", **kwargs}

    def last(events: Any) -> Response:
        final = [e for e in events if e.type in ("response.completed", "response.incomplete")]
        assert len(final) == 1, [e.type for e in events]
        response: Response = final[0].response
        return response

    if sync:

        def call() -> Response:
            with openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
                if not stream:
                    response: Response = client.responses.create(**args)
                    return response
                return last(list(client.responses.create(stream=True, **args)))

        return await asyncio.to_thread(call)  # the gateway runs on this loop
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        if not stream:
            reply: Response = await client.responses.create(**args)
            return reply
        async with client.responses.stream(**args) as events:
            accumulated: Response = await events.get_final_response()
            return accumulated


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
async def test_the_openai_sdk_gets_the_sims_answer_through_responses(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fmt: str, sync: bool, stream: bool
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, fmt)
    response = await ask(gw, sync=sync, stream=stream, input=PROMPT, instructions="Be brief.")
    assert response.output_text == FULL
    assert response.status == "completed" and response.object == "response"
    assert response.id.startswith("resp_") and response.model
    assert response.usage is not None
    assert response.usage.output_tokens > 0 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    [seen] = s.state.attempts()
    path = SIM_PATH[fmt].replace("generateContent", "streamGenerateContent") if stream else None
    assert seen["path"] == (path or SIM_PATH[fmt])
    assert seen["model"] == "m"


async def test_an_openai_target_gets_chat_completions_and_the_reply_is_a_response(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, "openai")
    body = {
        "model": "chat",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "input_text", "text": PROMPT}]},
        ],
        "max_output_tokens": 64,
        "temperature": 0.5,
        "store": True,  # accepted: nothing is stored either way
        "text": {"format": {"type": "json_object"}},
    }
    reply = await post(http, gw, body, path=RESPONSES)
    assert reply.status == 200, reply.body
    assert reply.headers["x-turnout-translation"] == "responses->openai"
    [seen] = s.state.attempts()
    sent = seen["request_body"]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief.\n\nAnswer in English."},
        {"role": "user", "content": PROMPT},
    ]
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.5
    assert sent["response_format"] == {"type": "json_object"}
    out = reply.json()
    assert out["object"] == "response" and out["status"] == "completed"
    assert out["error"] is None and out["store"] is False
    [message] = out["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "output_text", "text": FULL, "annotations": []}]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
async def test_a_function_call_round_trips_with_its_call_id(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fmt: str, stream: bool
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, fmt, tools="call")
    first = await ask(gw, sync=False, stream=stream, input=PROMPT, tools=TOOLS)
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "search" and orjson.loads(call.arguments) == {"query": PROMPT}
    assert call.status == "completed"
    if fmt != "gemini":  # Gemini's calls have no ids: the gateway names them (`call_...`)
        assert id_hash(PROMPT) in call.call_id
    turns: list[Any] = [
        {"role": "user", "content": PROMPT},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "borders are lines"},
    ]
    final = await ask(gw, sync=False, stream=stream, input=turns, tools=TOOLS)
    assert final.output_text == answer_text(VOICE, "m", "borders are lines", N_WORDS)
    if fmt == "openai":  # the id crossed both ways intact
        sent = s.state.attempts()[-1]["request_body"]["messages"]
        assert sent[-2]["tool_calls"][0]["id"] == call.call_id
        assert sent[-1] == {
            "role": "tool",
            "tool_call_id": call.call_id,
            "content": "borders are lines",
        }


async def test_a_stream_is_the_responses_event_sequence(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, gw = await served_by(sim_factory, gateway_factory, "anthropic", chunk_interval_ms=2)
    body = {"model": "chat", "input": PROMPT, "stream": True}
    reply = await post(http, gw, body, path=RESPONSES)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["x-turnout-translation"] == "responses->anthropic"
    events = [(name, orjson.loads(data)) for name, data in sse_events(reply.body)]
    names = [name for name, _ in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(names[4:-4]) == {"response.output_text.delta"}
    assert all(d["type"] == n for n, d in events)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    deltas = [d for n, d in events if n == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == FULL
    item_id = events[2][1]["item"]["id"]
    assert {d["item_id"] for d in deltas} == {item_id}
    completed = events[-1][1]["response"]
    assert completed["id"] == events[0][1]["response"]["id"]
    assert completed["output"][0]["content"][0]["text"] == FULL
    assert completed["usage"]["output_tokens"] > 0


async def test_a_failed_openai_target_fails_over_to_an_anthropic_one(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE)
    a = await sim_factory("a", format="anthropic", n_words=N_WORDS, voice=VOICE)
    targets = {"m@o": {"provider": "o", "model": "m"}, "m@a": {"provider": "a", "model": "m"}}
    routes = [{"alias": "chat", "candidates": ["m@o", "m@a"]}]
    gw = await gateway_factory(build_config({"o": o, "a": a}, routes, targets=targets))
    for stream in (False, True):
        set_fault(o, {"mode": "status", "status": 503})
        response = await ask(gw, sync=False, stream=stream, input=PROMPT)
        assert response.output_text == FULL
        assert [x["status"] for x in o.state.attempts()] == [503]
        assert len(a.state.attempts()) == 1
        o.state.clear_log()
        a.state.clear_log()


async def test_a_stream_cut_after_output_ends_with_response_failed(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, "openai")
    set_fault(s, {"mode": "cut", "after_chunks": 4})
    body = {"model": "chat", "input": PROMPT, "stream": True}
    reply = await post(http, gw, body, path=RESPONSES)
    assert reply.status == 200
    events = [(name, orjson.loads(data)) for name, data in sse_events(reply.body)]
    name, last = events[-1]
    assert name == "response.failed" and last["type"] == "response.failed"
    assert last["sequence_number"] == len(events) - 1
    failed = last["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "incomplete" in failed["error"]["message"]
    said = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    assert said and FULL.startswith(said) and said != FULL
    assert failed["output"][0]["content"][0]["text"] == said  # the answer as far as it got
    assert "response.completed" not in [n for n, _ in events]


async def test_a_stream_that_ends_without_done_still_ends_with_response_completed(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The OpenAI target finished but closed without `[DONE]`: the encoder ends the stream
    with the whole response, once."""
    s, gw = await served_by(sim_factory, gateway_factory, "openai")
    set_fault(s, {"mode": "no_done"})
    body = {"model": "chat", "input": PROMPT, "stream": True}
    reply = await post(http, gw, body, path=RESPONSES)
    events = [(name, orjson.loads(data)) for name, data in sse_events(reply.body)]
    names = [name for name, _ in events]
    assert reply.status == 200 and names[-2:] == ["response.output_item.done", "response.completed"]
    assert names.count("response.completed") == 1 and "response.failed" not in names
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == FULL
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"conversation": "conv_123"}, "conversation"),
        ({"background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"input": 7}, "input"),
    ],
)
async def test_what_needs_stored_state_is_refused_with_a_400_naming_it(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, extra: dict[str, Any], param: str
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, "openai")
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="chat", **{"input": PROMPT, **extra})
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == param
    assert error["type"] == "invalid_request_error"
    if param != "input":
        assert "stateless" in error["message"]
    assert s.state.attempts() == []


async def test_a_missing_input_is_a_400_in_openais_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, "openai")
    reply = await post(http, gw, {"model": "chat"}, path=RESPONSES)
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "input"
    assert reply.json()["error"]["code"] == "missing_field"
    assert s.state.attempts() == []


@pytest.fixture
async def wordless() -> AsyncIterator[str]:
    """An OpenAI-compatible upstream whose stream says nothing: a role chunk, a finish at
    `max_tokens` (a model that spent them all thinking), the usage and `[DONE]`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        head = {"id": "chatcmpl-w", "object": "chat.completion.chunk", "model": "m"}
        for delta, finish in (({"role": "assistant", "content": ""}, None), ({}, "length")):
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
        usage = {"prompt_tokens": 5, "completion_tokens": 64, "total_tokens": 69}
        await resp.write(
            b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n"
        )
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async with upstream_app(handler) as url:
        yield url


async def test_an_empty_answer_is_an_answer_not_a_failure(
    gateway_factory: GatewayFactory, http: aiohttp.ClientSession, wordless: str
) -> None:
    """Before: its only event was the last one, read as "finished without output": a failed
    attempt, a failover, and a 502 in the end."""
    config = load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "providers": {"w": {"base_url": wordless, "api_key": "k"}},
            "routes": [{"alias": "chat", "candidates": ["m@w"]}],
        },
        env={},
    )
    gw = await gateway_factory(config)
    body = {"model": "chat", "input": PROMPT, "stream": True, "max_output_tokens": 64}
    reply = await post(http, gw, body, path=RESPONSES)
    assert reply.status == 200 and reply.headers["x-turnout-attempts"] == "1"
    events = [(name, orjson.loads(data)) for name, data in sse_events(reply.body)]
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.incomplete",
    ]
    done = events[-1][1]["response"]
    assert done["incomplete_details"] == {"reason": "max_output_tokens"} and done["output"] == []
    assert done["usage"]["output_tokens"] == 64
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as client:
        stream = await client.responses.create(model="chat", input=PROMPT, stream=True)
        kinds = [e.type async for e in stream]
    assert kinds[-1] == "response.incomplete"
