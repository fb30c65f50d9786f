"""Anthropic-format clients calling Turnout (`POST /v1/messages`, issue 15 item 2), end to end:
the official `anthropic` SDK, sync and async, against a real gateway whose route holds a real
OpenAI-format sim (translated both ways) or a real Anthropic-format sim (passed through).

The sims share a voice, so both formats answer a prompt with the same deterministic text.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from gateway.config import load_data
from gateway.edge.server import Server
from gateway.sim import SimServer
from gateway.sim.answers import answer_text
from gateway.sim.tools import id_hash
from ops.faults.harness import sse_events
from tests.builders import GatewayFactory, SimFactory, build_config, post, set_fault

PROMPT = "what crosses the border"
N_WORDS = 16
VOICE = "model-x"
FULL = answer_text(VOICE, "claude", PROMPT, N_WORDS)
MESSAGES = "/v1/messages"
TOOLS: list[Any] = [
    {
        "name": "search",
        "description": "Search the web",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
FORMATS = ["openai", "anthropic", "gemini"]
CALL_PREFIX = {"openai": "call_", "anthropic": "toolu_"}  # Gemini's calls have no ids
SIM_PATH = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/claude:generateContent",
}


async def served_by(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fmt: str, **sim: Any
) -> tuple[SimServer, Server]:
    """A gateway whose route `chat` holds one target, claude@s, on a sim speaking `fmt`."""
    s = await sim_factory("s", format=fmt, n_words=N_WORDS, voice=VOICE, **sim)
    targets = {"claude@s": {"provider": "s", "model": "claude"}}
    routes = [{"alias": "chat", "candidates": ["claude@s"]}]
    return s, await gateway_factory(build_config({"s": s}, routes, targets=targets))


def async_sdk(gw: Server, key: str = "client-key") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)


def sync_sdk(gw: Server, key: str = "client-key") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def ask(gw: Server, *, sync: bool, stream: bool, **kwargs: Any) -> anthropic.types.Message:
    """One `messages.create` (or `messages.stream`) by the SDK; the final message."""
    args: dict[str, Any] = {"model": "chat", "max_tokens": 200, **kwargs}
    if sync:

        def call() -> anthropic.types.Message:
            with sync_sdk(gw) as client:
                if not stream:
                    message: anthropic.types.Message = client.messages.create(**args)
                    return message
                with client.messages.stream(**args) as events:
                    return events.get_final_message()

        return await asyncio.to_thread(call)  # the gateway runs on this loop
    async with async_sdk(gw) as client:
        if not stream:
            reply: anthropic.types.Message = await client.messages.create(**args)
            return reply
        async with client.messages.stream(**args) as events:
            return await events.get_final_message()


def text_of(message: anthropic.types.Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
async def test_the_anthropic_sdk_gets_the_sims_answer(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fmt: str, sync: bool, stream: bool
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, fmt)
    message = await ask(gw, sync=sync, stream=stream, messages=user(PROMPT))
    assert text_of(message) == FULL
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    assert message.usage.output_tokens > 0 and message.usage.input_tokens > 0
    assert message.id.startswith("msg_")  # Anthropic's kind of id, translated or not
    [seen] = s.state.attempts()
    assert seen["path"] == SIM_PATH[fmt].replace(
        ":generate", ":streamGenerate" if stream else ":generate"
    )
    assert seen["model"] == "claude"


async def test_a_passed_through_body_reaches_the_sim_byte_for_byte_but_its_model(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, "anthropic")
    body = {
        "max_tokens": 64,
        "model": "chat",  # not first: the key order is the client's
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": user(PROMPT),
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "stream": False,
    }
    reply = await post(http, gw, body, path=MESSAGES)
    assert reply.status == 200 and "x-turnout-translation" not in reply.headers
    [seen] = s.state.attempts()
    sent = orjson.dumps({**body, "model": "claude"})
    assert orjson.dumps(seen["request_body"]) == sent  # same keys, order, values: no round trip
    assert s.state.log[-1].body_bytes == len(sent)  # the size on the wire: nothing else
    assert reply.json()["content"][0]["text"] == FULL


async def test_a_translated_request_reaches_an_openai_target_as_chat_completions(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, "openai")
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    body = {
        "model": "chat",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "image", "source": image}]},
            {"role": "assistant", "content": "A picture."},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
        ],
        "temperature": 0.5,
        "top_k": 5,
    }
    reply = await post(http, gw, body, path=MESSAGES)
    assert reply.status == 200
    assert reply.headers["x-turnout-translation"] == "anthropic->openai; lossy; dropped=top_k"
    [seen] = s.state.attempts()
    assert seen["request_body"] == {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    }
                ],
            },
            {"role": "assistant", "content": "A picture."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": 64,
        "temperature": 0.5,
    }
    answer = reply.json()
    assert answer["type"] == "message" and answer["content"] == [{"type": "text", "text": FULL}]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
async def test_tool_use_round_trips_with_its_id(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fmt: str, stream: bool
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, fmt, tools="call")
    first = await ask(gw, sync=False, stream=stream, messages=user(PROMPT), tools=TOOLS)
    [call] = [b for b in first.content if b.type == "tool_use"]
    if fmt == "gemini":  # no ids: the gateway names the call (`call_` + a hash)
        assert call.id.startswith("call_") and call.name == "search"
    else:
        assert call.id == CALL_PREFIX[fmt] + id_hash(PROMPT) and call.name == "search"
    assert call.input == {"query": PROMPT} and first.stop_reason == "tool_use"
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "borders are lines"}
    turns = [
        *user(PROMPT),
        {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
        {"role": "user", "content": [result]},
    ]
    final = await ask(gw, sync=False, stream=stream, messages=turns, tools=TOOLS)
    assert text_of(final) == answer_text(VOICE, "claude", "borders are lines", N_WORDS)
    if fmt == "gemini":  # Gemini is told the function's name and its result
        sent_turns = s.state.attempts()[-1]["request_body"]["contents"]
        response = sent_turns[-1]["parts"][0]["functionResponse"]
        assert response["name"] == "search"
        assert sent_turns[-2]["parts"][0]["functionCall"]["name"] == "search"
        return
    sent = s.state.attempts()[-1]["request_body"]["messages"]
    if fmt == "openai":  # the id crossed both ways intact
        assert sent[-2]["tool_calls"][0]["id"] == call.id
        assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "borders are lines"}
    else:
        assert sent[-1]["content"] == [result]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stream", [False, True], ids=["reply", "stream"])
async def test_a_stop_sequence_ends_the_answer_there(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fmt: str, stream: bool
) -> None:
    s, gw = await served_by(sim_factory, gateway_factory, fmt)
    word = FULL.split(" ")[5]
    cut = FULL[: FULL.index(" " + word)]
    message = await ask(
        gw, sync=False, stream=stream, messages=user(PROMPT), stop_sequences=[" " + word]
    )
    assert text_of(message) == cut
    if fmt == "anthropic":
        assert message.stop_reason == "stop_sequence" and message.stop_sequence == " " + word
    else:  # OpenAI and Gemini say "stop" whether at a stop sequence or not
        assert message.stop_reason == "end_turn"
        sent = s.state.attempts()[0]["request_body"]
        stops = sent["stop"] if fmt == "openai" else sent["generationConfig"]["stopSequences"]
        assert stops == [" " + word]


async def test_a_translated_stream_is_the_messages_api_event_sequence(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, gw = await served_by(sim_factory, gateway_factory, "openai", chunk_interval_ms=2)
    body = {"model": "chat", "max_tokens": 64, "messages": user(PROMPT), "stream": True}
    reply = await post(http, gw, body, path=MESSAGES)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["x-turnout-translation"] == "anthropic->openai"
    events = [(name, orjson.loads(data)) for name, data in sse_events(reply.body)]
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(d["type"] == n for n, d in events)
    assert set(names[2:-3]) == {"content_block_delta"}
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == FULL
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 0


async def test_a_gemini_target_serves_an_anthropic_client_and_fails_over_to_openai(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Anthropic -> Gemini is translated like the rest (`x-turnout-translation:
    anthropic->gemini`); when the Gemini target fails before its first byte, the route's
    OpenAI-format target answers, in Messages API shape both times."""
    g = await sim_factory("g", format="gemini", n_words=N_WORDS, voice=VOICE)
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE)
    targets = {
        "flash@g": {"provider": "g", "model": "claude"},
        "claude@o": {"provider": "o", "model": "claude"},
    }
    routes: list[dict[str, Any]] = [{"alias": "chat", "candidates": ["flash@g", "claude@o"]}]
    gw = await gateway_factory(build_config({"g": g, "o": o}, routes, targets=targets))
    body = {"model": "chat", "max_tokens": 64, "messages": user(PROMPT)}
    reply = await post(http, gw, body, path=MESSAGES)
    assert reply.status == 200 and reply.headers["x-turnout-translation"] == "anthropic->gemini"
    assert reply.json()["content"] == [{"type": "text", "text": FULL}]
    assert reply.json()["id"].startswith("msg_")
    assert len(g.state.attempts()) == 1 and o.state.attempts() == []

    set_fault(g, {"mode": "status", "status": 503})
    for stream in (False, True):
        message = await ask(gw, sync=False, stream=stream, messages=user(PROMPT))
        assert text_of(message) == FULL and message.stop_reason == "end_turn"
    assert [a["status"] for a in g.state.attempts()[1:]] == [503, 503]
    assert len(o.state.attempts()) == 2


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_the_output_limit_goes_where_the_openai_provider_wants_it(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    field: str,
) -> None:
    """OpenAI's reasoning models refuse `max_tokens`: a provider marked
    `max_tokens_field: max_completion_tokens` gets an Anthropic (or Responses) client's
    limit there; an OpenAI client's own request is passed through as it was sent."""
    s = await sim_factory("s", n_words=N_WORDS, voice=VOICE)
    data = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {"s": {"base_url": s.base_url, "api_key": "k", "max_tokens_field": field}},
        "targets": {"claude@s": {"provider": "s", "model": "claude"}},
        "routes": [{"alias": "chat", "candidates": ["claude@s"]}],
    }
    gw = await gateway_factory(load_data(data, env={}))
    reply = await post(
        http, gw, {"model": "chat", "max_tokens": 77, "messages": user(PROMPT)}, path=MESSAGES
    )
    assert reply.status == 200 and text_of_json(reply.json()) == FULL
    responses = await post(
        http, gw, {"model": "chat", "input": PROMPT, "max_output_tokens": 66}, path="/v1/responses"
    )
    assert responses.status == 200
    own = await post(http, gw, {"model": "chat", "max_tokens": 55, "messages": user(PROMPT)})
    assert own.status == 200
    sent = [a["request_body"] for a in s.state.attempts()]
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    assert [b.get(field) for b in sent[:2]] == [77, 66] and other not in sent[0]
    assert sent[2]["max_tokens"] == 55  # passed through: the client's own field


def text_of_json(message: dict[str, Any]) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")
