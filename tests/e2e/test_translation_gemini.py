"""OpenAI-format clients served by Gemini-format providers, end to end (issue 15): the
official `openai` SDK against a real gateway whose route holds a real Gemini-format sim
(`SimServer(format="gemini")`, the Generative Language API), alone or behind an OpenAI-format
one.

The sims share a voice, so both vendors answer a prompt with the same deterministic text: an
answer and a failover across vendors can be compared word for word.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.edge.server import Server
from gateway.formats.gemini_response import tool_id
from gateway.sim import SimServer, gemini_wire
from gateway.sim.answers import answer_text
from gateway.sim.tools import ToolCall, id_hash
from tests.builders import (
    GatewayFactory,
    SimFactory,
    admin_targets,
    build_config,
    chat,
    error_of,
    post,
    set_fault,
    stream_text,
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

MODEL = "gemini-flash"
FULL = answer_text(VOICE, MODEL, PROMPT, N_WORDS)


async def gateway_with(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    *,
    primary: str | None = None,
    route: dict[str, Any] | None = None,
    **gemini_kwargs: Any,
) -> tuple[SimServer, SimServer | None, Server]:
    """A Gemini-format sim `g` (target flash@g), behind an OpenAI-format sim `o` (target
    flash@o) when `primary` is "openai"."""
    return await foreign_behind_openai(
        sim_factory,
        gateway_factory,
        fmt="gemini",
        name="g",
        target="flash",
        model=MODEL,
        primary=primary,
        route=route,
        **gemini_kwargs,
    )


async def test_an_openai_client_gets_a_gemini_answer(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    g, _, gw = await gateway_with(sim_factory, gateway_factory)
    async with sdk(gw) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat",
            messages=[
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": PROMPT},
            ],
            max_tokens=200,
            seed=7,
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == FULL
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL and completion.id
    assert completion.usage is not None and completion.usage.prompt_tokens == 6
    assert completion.usage.completion_tokens == N_WORDS + 1
    assert raw.headers["x-turnout-translation"] == "openai->gemini"  # nothing was lost
    assert raw.headers["x-turnout-target"] == "flash@g"
    [seen] = g.state.attempts()
    assert seen["path"] == f"/v1beta/models/{MODEL}:generateContent" and seen["query"] == ""
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-goog-api-key"] == "key-g"
    assert "authorization" not in headers  # neither the client's key nor a Bearer
    assert seen["request_body"] == {
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "generationConfig": {"maxOutputTokens": 200, "seed": 7},
    }


async def test_a_stream_is_translated_and_ends_with_usage_and_done(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    g, _, gw = await gateway_with(sim_factory, gateway_factory, chunk_interval_ms=2)
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
    assert chunks[-1].usage.completion_tokens == N_WORDS + 1
    seen = g.state.attempts()[-1]
    assert seen["path"].endswith(":streamGenerateContent") and seen["query"] == "alt=sse"
    assert seen["stream"] is True and seen["outcome"] == "completed"
    reply = await post(http, gw, chat(PROMPT, stream=True))
    assert reply.status == 200 and reply.headers["x-turnout-translation"] == "openai->gemini"
    assert reply.body.endswith(b"data: [DONE]\n\n") and stream_text(reply.body) == FULL


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_round_trip_with_their_ids(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, stream: bool
) -> None:
    g, _, gw = await gateway_with(sim_factory, gateway_factory, tools="call")
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
            answer_id = chunks[0].id
            extra = calls[0].model_dump().get("extra_content")
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
            answer_id = done.id
            extra = call.model_dump().get("extra_content")
        # Gemini gave the call no id: it is derived from the answer's id and the call
        gemini_id = answer_id.removeprefix("chatcmpl-")  # the client sees OpenAI's prefix
        assert call_id == tool_id(gemini_id, 0, "search", arguments) and name == "search"
        assert orjson.loads(arguments) == {"query": PROMPT} and finish == "tool_calls"
        # Gemini signed the call: the client gets the signature where Google's own
        # OpenAI-compatible endpoint puts it, and sends it back with the call.
        signature = gemini_wire.signature(ToolCall("search", id_hash(PROMPT), arguments))
        assert extra == {"google": {"thought_signature": signature}}
        # The result goes back under the same id; Gemini is told the function's name.
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                        "extra_content": extra,
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
        VOICE, MODEL, "borders are lines", N_WORDS
    )
    contents = g.state.attempts()[-1]["request_body"]["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"id": call_id, "name": "search", "args": {"query": PROMPT}},
                "thoughtSignature": signature,  # back with its call, as Gemini 3 requires
            }
        ],
    }
    assert contents[2]["parts"] == [
        {
            "functionResponse": {
                "id": call_id,
                "name": "search",
                "response": {"output": "borders are lines"},
            }
        }
    ]


# A hang before the headers fails a stream over after headers_s; a non-streaming answer is
# given its whole total_s and not re-sent without a deadline (reliability.md): streams only.
@pytest.mark.parametrize(
    ("fault", "stream"),
    [(f, s) for f in PRE_FIRST_BYTE for s in (False, True)] + [({"mode": "hang"}, True)],
    ids=lambda v: v["mode"] + str(v.get("status", "")) if isinstance(v, dict) else str(v),
)
async def test_an_openai_outage_fails_over_to_gemini(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, fault: dict[str, Any], stream: bool
) -> None:
    g, o, gw = await gateway_with(sim_factory, gateway_factory, primary="openai")
    assert o is not None
    set_fault(o, fault)
    async with sdk(gw) as client:
        text = await answer(client, stream=stream)
    assert text == FULL
    assert len(g.state.attempts()) == 1 and len(o.state.attempts()) >= 1


async def two_vendors(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> tuple[SimServer, SimServer, Server]:
    """Gemini first (flash@g), OpenAI behind it (flash@o)."""
    g = await sim_factory("g", format="gemini", n_words=N_WORDS, voice=VOICE)
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE)
    targets = {
        "flash@g": {"provider": "g", "model": MODEL},
        "flash@o": {"provider": "o", "model": MODEL},
    }
    routes = [{"alias": "chat", "candidates": ["flash@g", "flash@o"]}]
    return g, o, await gateway_factory(build_config({"g": g, "o": o}, routes, targets=targets))


async def test_a_gemini_429_fails_over_and_its_retry_delay_throttles_the_target(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    g, _, gw = await two_vendors(sim_factory, gateway_factory)
    set_fault(g, {"mode": "status", "status": 429, "retry_after": 30, "count": 1})
    before = time.time()
    reply = await post(http, gw, chat(PROMPT))
    assert reply.status == 200 and reply.headers["x-turnout-target"] == "flash@o"
    assert reply.json()["choices"][0]["message"]["content"] == FULL
    assert "x-turnout-translation" not in reply.headers  # the answer was not translated
    # The RetryInfo in the body (no Retry-After header) keeps the target out for its delay:
    # the next request goes straight to the other vendor, though the sim would answer now.
    again = await post(http, gw, chat(PROMPT))
    assert again.headers["x-turnout-target"] == "flash@o" and len(g.state.attempts()) == 1
    throttled_until = (await admin_targets(http, gw))["flash@g"]["throttled_until"]
    assert before + 28.5 <= throttled_until <= time.time() + 30.5


async def test_a_gemini_overload_in_the_stream_fails_over_before_the_first_byte(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    g, _, gw = await two_vendors(sim_factory, gateway_factory)
    set_fault(g, {"mode": "error_event", "after_chunks": 0})  # UNAVAILABLE, in the stream
    reply = await post(http, gw, chat(PROMPT, stream=True))
    assert reply.headers["x-turnout-target"] == "flash@o" and stream_text(reply.body) == FULL


async def test_a_gemini_stream_failing_mid_answer_is_continued_on_openai(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    g, o, gw = await two_vendors(sim_factory, gateway_factory)
    set_fault(g, {"mode": "error_event", "after_chunks": 3, "message": "overloaded"})
    reply = await post(http, gw, chat(PROMPT, stream=True))  # after the first byte
    assert reply.headers["x-turnout-target"] == "flash@g"  # who answered first
    assert reply.body.endswith(b"data: [DONE]\n\n") and stream_text(reply.body) == FULL
    assert g.state.attempts()[-1]["outcome"] == "error_event" and len(o.state.attempts()) == 1


async def test_a_bad_gemini_key_sets_the_target_aside(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    g = await sim_factory("g", format="gemini", n_words=N_WORDS, voice=VOICE, api_key="right")
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE)
    targets = {
        "flash@g": {"provider": "g", "model": MODEL},
        "flash@o": {"provider": "o", "model": MODEL},
    }
    routes = [{"alias": "chat", "candidates": ["flash@g", "flash@o"]}]
    gw = await gateway_factory(build_config({"g": g, "o": o}, routes, targets=targets))
    reply = await post(http, gw, chat(PROMPT))  # Gemini's 400 API_KEY_INVALID: not the caller's
    assert reply.status == 200 and reply.headers["x-turnout-target"] == "flash@o"
    aside = (await admin_targets(http, gw))["flash@g"]
    assert aside["misconfigured"] is True
    assert aside["misconfigured_reason"] == (
        "status 401: credentials rejected: API key not valid. Please pass a valid API key."
    )
    assert "key-g" not in str(aside)  # the key is never shown


async def test_a_gemini_caller_error_comes_back_in_openais_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await gateway_with(sim_factory, gateway_factory, prefill="reject")
    body = chat(PROMPT)
    body["messages"].append({"role": "assistant", "content": "Well,"})
    reply = await post(http, gw, body)
    err = error_of(reply, 400, None)
    assert err["type"] == "invalid_request_error" and "ends with a user turn" in err["message"]


async def test_strict_translation_skips_a_lossy_gemini_candidate_and_says_why(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    g, o, gw = await gateway_with(
        sim_factory, gateway_factory, primary="openai", route={"translation": "strict"}
    )
    assert o is not None
    set_fault(o, {"mode": "status", "status": 503})
    lossless = await post(http, gw, chat(PROMPT, seed=7))  # a seed Gemini carries
    assert lossless.headers["x-turnout-target"] == "flash@g"
    lossy = await post(http, gw, chat(PROMPT, user="u-1"), headers={"x-turnout-debug": "route"})
    assert lossy.status == 502 and len(g.state.attempts()) == 1  # never sent to Gemini
    assert "lossy translation to gemini: would drop user" in lossy.headers["x-turnout-route"]


async def test_a_lossy_translation_is_named_in_the_header(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await gateway_with(sim_factory, gateway_factory)
    body = chat(PROMPT, user="u-1", logprobs=True, parallel_tool_calls=False, tools=TOOLS)
    reply = await post(http, gw, body)
    assert reply.status == 200
    assert reply.headers["x-turnout-translation"] == (
        "openai->gemini; lossy; dropped=logprobs,parallel_tool_calls,user"
    )


async def test_a_gemini_target_is_no_candidate_for_embeddings(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, _, gw = await gateway_with(sim_factory, gateway_factory)
    reply = await post(http, gw, {"model": "chat", "input": "x"}, path="/v1/embeddings")
    err = error_of(reply, 400, "no_capable_target")
    assert "a gemini target serves chat only" in err["message"]


async def test_a_stream_cut_on_openai_is_continued_on_gemini_with_prefill(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    g = await sim_factory("g", format="gemini", n_words=N_WORDS, voice=VOICE, prefill="continue")
    o = await sim_factory("o", n_words=N_WORDS, voice=VOICE, chunk_interval_ms=5)
    targets = {
        "flash@o": {"provider": "o", "model": MODEL},
        "flash@g": {"provider": "g", "model": MODEL, "supports": ["prefill"]},
    }
    routes = [{"alias": "chat", "candidates": ["flash@o", "flash@g"]}]
    gw = await gateway_factory(build_config({"g": g, "o": o}, routes, targets=targets))
    set_fault(o, {"mode": "cut", "after_chunks": 6})
    reply = await post(http, gw, chat(PROMPT, stream=True))
    assert reply.status == 200 and reply.body.endswith(b"data: [DONE]\n\n")
    assert stream_text(reply.body) == FULL  # every word once: the seam holds
    [seen] = g.state.attempts()
    last = seen["request_body"]["contents"][-1]
    assert last["role"] == "model"  # Gemini was asked to go on from the delivered text
    delivered = last["parts"][0]["text"]
    assert FULL.startswith(delivered) and delivered
