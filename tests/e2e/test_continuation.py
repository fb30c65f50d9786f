"""Mid-stream continuation end to end (issue 14): a stream that fails after its first byte is
completed on the next candidate inside the same client stream. Real sims and a real gateway.

The sims share a *voice* (`SimServer(voice=...)`): they answer a prompt alike, as two
providers of one model would, so a regenerated answer can be spliced. A sim with another voice
answers differently: the splice is refused and the stream ends with the first failure's error.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from gateway.edge.server import Server
from gateway.sim import SimServer
from gateway.sim.answers import answer_text, answer_words, count_tokens, prompt_tokens_of
from tests.builders import (
    GatewayFactory,
    SimFactory,
    admin_targets,
    build_config,
    chat,
    post,
    set_fault,
    sse_events,
    stream_text,
)

PROMPT = "tell me about seams"
N_WORDS = 24
VOICE = "model-x"
FULL = answer_text(VOICE, "m", PROMPT, N_WORDS)
CUT = {"mode": "cut", "after_chunks": 8}


async def pair(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    *,
    b_voice: str = VOICE,
    b_prefill: str = "ignore",
    b_supports: list[str] | None = None,
    route: dict[str, Any] | None = None,
) -> tuple[SimServer, SimServer, Server]:
    p = await sim_factory("p", n_words=N_WORDS, voice=VOICE, chunk_interval_ms=5)
    b = await sim_factory("b", n_words=N_WORDS, voice=b_voice, prefill=b_prefill)
    targets = {
        "m@p": {"provider": "p", "model": "m"},
        "m@b": {"provider": "b", "model": "m", "supports": b_supports or []},
    }
    routes = [{"alias": "chat", "candidates": ["m@p", "m@b"], **(route or {})}]
    gw = await gateway_factory(build_config({"p": p, "b": b}, routes, targets=targets))
    return p, b, gw


def assert_one_complete_answer(body: bytes) -> str:
    events = sse_events(body)
    assert events[-1] == (None, "[DONE]"), events[-3:]
    assert [e for e in events if e == (None, "[DONE]")] == [(None, "[DONE]")]
    assert all(name is None for name, _ in events), "an error event in a completed stream"
    ids = {orjson.loads(d)["id"] for _, d in events[:-1]}
    assert len(ids) == 1, ids  # one stream, as far as the client can tell
    return stream_text(body)


@pytest.mark.parametrize(
    "fault",
    [
        CUT,
        {"mode": "stall", "after_chunks": 8},
        {"mode": "garbled", "after_chunks": 8, "times": 4},  # a run of malformed events
    ],
    ids=["cut", "stall", "malformed-run"],
)
async def test_a_failed_stream_is_completed_by_regenerating_and_splicing(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
) -> None:
    p, b, gw = await pair(sim_factory, gateway_factory)
    set_fault(p, fault)
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert r.status == 200
    assert r.target == "m@p"  # the headers left with the first target
    assert assert_one_complete_answer(r.body) == FULL  # exactly once, nothing lost at the seam
    (regenerated,) = b.state.attempts()
    assert regenerated["request_body"]["messages"][-1]["role"] == "user"  # the request again
    health = await admin_targets(http, gw)
    assert health["m@p"]["consecutive_failures"] == 1  # the cut still counts against p
    assert health["m@b"]["consecutive_failures"] == 0


async def test_a_prefill_target_continues_the_delivered_text(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await pair(
        sim_factory, gateway_factory, b_prefill="continue", b_supports=["prefill"]
    )
    set_fault(p, CUT)
    r = await post(http, gw, chat(PROMPT, stream=True))
    text = assert_one_complete_answer(r.body)
    assert text == FULL
    (continued,) = b.state.attempts()
    last = continued["request_body"]["messages"][-1]
    assert last["role"] == "assistant" and FULL.startswith(last["content"]) and last["content"]
    assert last["content"] != FULL


async def test_a_target_that_refuses_prefill_is_asked_for_the_whole_answer_and_remembered(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await pair(sim_factory, gateway_factory, b_prefill="reject", b_supports=["prefill"])
    set_fault(p, {**CUT, "count": 2})
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert assert_one_complete_answer(r.body) == FULL
    refused, regenerated = b.state.attempts()
    assert (
        refused["status"] == 400 and refused["request_body"]["messages"][-1]["role"] == "assistant"
    )
    assert regenerated["request_body"]["messages"][-1]["role"] == "user"
    # Remembered: the next continuation on b regenerates at once.
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert assert_one_complete_answer(r.body) == FULL
    assert len(b.state.attempts()) == 3
    assert b.state.attempts()[-1]["request_body"]["messages"][-1]["role"] == "user"
    assert (await admin_targets(http, gw))["m@b"]["consecutive_failures"] == 0


async def test_a_regenerated_answer_that_differs_ends_with_the_first_failure(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await pair(sim_factory, gateway_factory, b_voice="someone-else")
    set_fault(p, CUT)
    r = await post(http, gw, chat(PROMPT, stream=True))
    events = sse_events(r.body)
    assert (None, "[DONE]") not in events
    name, data = events[-1]
    assert name == "error"
    assert orjson.loads(data)["error"]["code"] == "upstream_cut"  # p's failure, not b's text
    sent = "".join(
        c["delta"].get("content") or ""
        for n, d in events
        if n is None
        for c in orjson.loads(d)["choices"]
    )
    assert sent and FULL.startswith(sent) and sent != FULL  # only p's part, never b's
    assert len(b.state.attempts()) == 1
    assert (await admin_targets(http, gw))["m@b"]["consecutive_failures"] == 0  # not its fault


async def test_a_route_can_opt_out(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await pair(sim_factory, gateway_factory, route={"continuation": False})
    set_fault(p, CUT)
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert sse_events(r.body)[-1][0] == "error"
    assert b.state.attempts() == []


async def test_the_openai_sdk_reads_one_complete_answer_across_the_seam(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    p, b, gw = await pair(sim_factory, gateway_factory)
    set_fault(p, CUT)
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    async with client:
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        text = ""
        finish = None
        async for event in stream:
            for choice in event.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    assert text == FULL
    assert finish == "stop"
    assert len(b.state.attempts()) == 1  # b wrote the rest


async def test_usage_of_a_continued_stream_covers_the_failed_attempt_and_says_so(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await pair(sim_factory, gateway_factory)
    set_fault(p, CUT)
    body = chat(PROMPT, stream=True, stream_options={"include_usage": True})
    r = await post(http, gw, body)
    assert assert_one_complete_answer(r.body) == FULL
    usage = next(
        orjson.loads(d)["usage"]
        for n, d in sse_events(r.body)
        if n is None and d != "[DONE]" and orjson.loads(d).get("usage")
    )
    own_prompt = prompt_tokens_of(body)  # what b billed for the prompt, as p did
    own_completion = count_tokens(FULL)  # b regenerated the whole answer
    estimated = usage["turnout_estimated"]
    assert estimated["failed_attempts"] == 1
    assert estimated["prompt_tokens"] == own_prompt  # p was sent the same prompt
    # p's 8 events before the cut: the role chunk, then 7 chunks of text
    delivered = "".join(answer_words(VOICE, "m", PROMPT, N_WORDS)[:7])
    assert estimated["completion_tokens"] == math.ceil(len(delivered) / 4)
    assert usage["prompt_tokens"] == 2 * own_prompt
    assert usage["completion_tokens"] == own_completion + estimated["completion_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert len(b.state.attempts()) == 1
