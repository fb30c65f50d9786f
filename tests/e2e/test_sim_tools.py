"""The sim's opt-in tool calls (``tools="call"``) in both wire formats, with the official SDKs as
clients: one call to the forced (else the first) tool with ``{"query": <prompt>}``, the same id
hash in both formats, streamed each format's way; a tool result is answered with text derived
from it, alike in both formats; with ``tools="ignore"`` tools are ignored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from gateway.sim import SimServer, answer_text
from gateway.sim.tools import id_hash
from tests.builders import SimFactory

PROMPT = "weather in Paris"
MODEL = "m"
N_WORDS = 4
RESULT = "sunny, 21 C"
OPENAI_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("search", "lookup")
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": n, "input_schema": {"type": "object"}} for n in ("search", "lookup")
]
USER: list[Any] = [{"role": "user", "content": PROMPT}]


@pytest.fixture
async def oai(sim_factory: SimFactory) -> AsyncIterator[openai.AsyncOpenAI]:
    sim = await sim_factory("o", voice="v", n_words=N_WORDS, tools="call")
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
async def ant(sim_factory: SimFactory) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sim = await sim_factory("a", format="anthropic", voice="v", n_words=N_WORDS, tools="call")
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0) as client:
        yield client


async def test_openai_gets_one_call_to_the_first_tool(oai: openai.AsyncOpenAI) -> None:
    reply = await oai.chat.completions.create(model=MODEL, messages=USER, tools=OPENAI_TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.function.name == "search"
    assert call.id == "call_" + id_hash(PROMPT)
    assert json.loads(call.function.arguments) == {"query": PROMPT}


async def test_openai_streams_the_call_in_pieces(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model=MODEL,
        messages=USER,
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        stream=True,
        stream_options={"include_usage": True},
    )
    ids, names, pieces, finish, usage = [], [], [], [], None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                assert delta.index == 0
                ids.append(delta.id)
                if delta.function is not None:
                    names.append(delta.function.name)
                    pieces.append(delta.function.arguments or "")
    assert [i for i in ids if i] == ["call_" + id_hash(PROMPT)]
    assert [n for n in names if n] == ["lookup"]  # the forced tool
    assert pieces[0] == "" and 2 <= len([p for p in pieces if p]) <= 3
    assert json.loads("".join(pieces)) == {"query": PROMPT}
    assert finish[-1] == "tool_calls" and usage is not None and usage.completion_tokens >= 1


async def test_anthropic_gets_one_tool_use_block(ant: anthropic.AsyncAnthropic) -> None:
    message = await ant.messages.create(
        model=MODEL, max_tokens=64, messages=USER, tools=ANTHROPIC_TOOLS
    )
    assert message.stop_reason == "tool_use" and len(message.content) == 1
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "search"
    assert block.id == "toolu_" + id_hash(PROMPT)
    assert block.input == {"query": PROMPT}


async def test_anthropic_streams_the_tool_use_as_input_json_deltas(
    ant: anthropic.AsyncAnthropic,
) -> None:
    async with ant.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=USER,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "tool", "name": "lookup"},
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds.count("input_json") in (2, 3)
    assert final.stop_reason == "tool_use" and len(final.content) == 1
    block = final.content[0]
    assert block.type == "tool_use" and block.name == "lookup"
    assert block.id == "toolu_" + id_hash(PROMPT) and block.input == {"query": PROMPT}


async def test_a_tool_result_is_answered_with_the_same_text_in_both_formats(
    oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic
) -> None:
    first = await oai.chat.completions.create(model=MODEL, messages=USER, tools=OPENAI_TOOLS)
    call = (first.choices[0].message.tool_calls or [])[0]
    followup: list[Any] = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": RESULT},
    ]
    final = await oai.chat.completions.create(model=MODEL, messages=followup, tools=OPENAI_TOOLS)
    assert final.choices[0].finish_reason == "stop"
    text = final.choices[0].message.content
    assert text == answer_text("v", MODEL, RESULT, N_WORDS)

    used = await ant.messages.create(
        model=MODEL, max_tokens=64, messages=USER, tools=ANTHROPIC_TOOLS
    )
    block = used.content[0]
    assert block.type == "tool_use"
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.id, "content": RESULT}
    turns: list[Any] = [*USER, used.to_param(), {"role": "user", "content": [result]}]
    async with ant.messages.stream(
        model=MODEL, max_tokens=64, tools=ANTHROPIC_TOOLS, messages=turns
    ) as stream:
        answer = await stream.get_final_message()
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text" and answer.content[0].text == text


async def test_tool_choice_none_or_a_prefill_gets_text(
    oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic
) -> None:
    reply = await oai.chat.completions.create(
        model=MODEL, messages=USER, tools=OPENAI_TOOLS, tool_choice="none"
    )
    assert reply.choices[0].message.content == answer_text("v", MODEL, PROMPT, N_WORDS)
    message = await ant.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=USER,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "none"},
    )
    assert message.content[0].type == "text"
    prefilled = await ant.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[*USER, {"role": "assistant", "content": "[v]"}],
        tools=ANTHROPIC_TOOLS,
    )
    assert prefilled.stop_reason == "end_turn"


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_with_tools_ignored_the_answer_is_text(sim_factory: SimFactory, fmt: str) -> None:
    sim: SimServer = await sim_factory("i", format=fmt, voice="v", n_words=N_WORDS)
    expected = answer_text("v", MODEL, PROMPT, N_WORDS)
    if fmt == "openai":
        async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as o:
            reply = await o.chat.completions.create(model=MODEL, messages=USER, tools=OPENAI_TOOLS)
        assert reply.choices[0].message.content == expected
        assert reply.choices[0].message.tool_calls is None
        return
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0) as a:
        message = await a.messages.create(
            model=MODEL, max_tokens=64, messages=USER, tools=ANTHROPIC_TOOLS
        )
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == expected
