"""The Responses API as a client's format (`gateway.formats.responses_ingress`,
`responses_events`), golden: requests as OpenAI's Responses docs write them (the
function-calling guide's conversation), answers and stream events checked against the `openai`
SDK's own pydantic types (validated, not merely constructed) and its own stream accumulator.
Plus a seeded property test: a Responses request read into the chat model, sent as Chat
Completions and read back, is the same request."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pydantic
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from gateway.formats import chat, openai_chat, openai_upstream, responses_ingress
from gateway.formats.translate import Translation, translation
from gateway.telemetry.hub import Usage
from gateway.upstream.dialect import RESPONSES
from gateway.upstream.sse import Kind, SseSplitter

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get current temperature for a given location.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}
CALL_ID = "call_12345xyz"
# The function-calling guide's second request: the call and its output sent back as input.
CONVERSATION: dict[str, Any] = {
    "model": "alias",
    "instructions": "You are a helpful assistant.",
    "input": [
        {"role": "user", "content": "What's the weather like in Paris today?"},
        {
            "type": "function_call",
            "id": "fc_12345xyz",
            "call_id": CALL_ID,
            "name": "get_weather",
            "arguments": '{"location":"Paris, France"}',
        },
        {"type": "function_call_output", "call_id": CALL_ID, "output": "14 degrees"},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "And here?"},
                {"type": "input_image", "image_url": "https://example.com/a.jpg"},
            ],
        },
    ],
    "tools": [WEATHER],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "max_output_tokens": 1024,
    "temperature": 0.5,
    "top_p": 0.9,
    "store": True,
    "user": "u-1",
}
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)


def to(target: str, payload: dict[str, Any]) -> Translation:
    tr = translation(payload, "chat", target, "m", "responses")
    assert tr is not None and (tr.source, tr.target) == ("responses", target)
    return tr


def test_a_responses_conversation_becomes_a_chat_completions_request() -> None:
    tr = to("openai", CONVERSATION)
    assert tr.dropped == frozenset() and tr.note == "responses->openai"
    assert tr.path == "/chat/completions"
    assert tr.body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather like in Paris today?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": CALL_ID,
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"location":"Paris, France"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": CALL_ID, "content": "14 degrees"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And here?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": WEATHER["description"],
                    "parameters": WEATHER["parameters"],
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 1024,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u-1",
    }


def test_the_same_conversation_reaches_anthropic_with_the_call_id_intact() -> None:
    tr = to("anthropic", CONVERSATION)
    messages = tr.body["messages"]
    assert tr.body["system"] == [{"type": "text", "text": "You are a helpful assistant."}]
    assert messages[1]["content"] == [
        {
            "type": "tool_use",
            "id": CALL_ID,
            "name": "get_weather",
            "input": {"location": "Paris, France"},
        }
    ]
    assert messages[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": CALL_ID,
        "content": [{"type": "text", "text": "14 degrees"}],
    }
    assert tr.body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    ("extra", "dropped"),
    [
        ({"tools": [{"type": "web_search"}]}, {"tools.web_search"}),
        ({"reasoning": {"effort": "high"}}, {"reasoning"}),
        ({"include": ["reasoning.encrypted_content"]}, {"include"}),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, {"input.reasoning"}),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            {"input_image.file_id"},
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            {"content.input_file"},
        ),
        ({"text": {"format": {"type": "text"}, "verbosity": "low"}}, {"text.verbosity"}),
        ({"tool_choice": {"type": "allowed_tools", "tools": []}}, {"tool_choice"}),
        ({"prompt_cache_key": "k"}, {"prompt_cache_key"}),
    ],
)
def test_what_has_no_place_is_named_as_dropped(extra: dict[str, Any], dropped: set[str]) -> None:
    tr = to("openai", {"model": "a", "input": "hi", **extra})
    assert tr.dropped == dropped
    assert tr.note == "responses->openai; lossy; dropped=" + ",".join(sorted(dropped))


@pytest.mark.parametrize(
    "neutral",
    [
        {"store": False},
        {"store": True},
        {"include": []},
        {"truncation": "disabled"},
        {"metadata": {}},
        {"service_tier": "auto"},
        {"stream_options": {"include_obfuscation": False}},
        {"text": {"format": {"type": "text"}}},
    ],
)
def test_a_neutral_value_is_not_a_loss(neutral: dict[str, Any]) -> None:
    assert to("openai", {"model": "a", "input": "hi", **neutral}).dropped == frozenset()


def test_json_schema_output_crosses_as_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    body = to("openai", {"model": "a", "input": "hi", "text": {"format": fmt}}).body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


COMPLETION = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": CALL_ID,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}


def test_a_chat_completion_becomes_a_response_the_sdk_validates() -> None:
    tr = to("openai", {"model": "a", "input": "hi"})
    body = tr.reply(orjson.dumps(COMPLETION))
    assert body is not None
    response = Response.model_validate_json(body)  # every required field, every type
    assert response.id == "resp_abc123" and response.model == "gpt-4.1-2025-04-14"
    assert response.status == "completed" and response.error is None
    assert response.output_text == "Let me check."
    message, call = response.output
    assert message.type == "message" and message.id == "msg_abc123"
    assert call.type == "function_call" and call.call_id == CALL_ID
    assert call.arguments == '{"location":"Paris"}' and call.name == "get_weather"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (19, 10)
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert RESPONSES.reply_usage(orjson.loads(body)) == Usage(19, 10, "gpt-4.1-2025-04-14", 4)


def test_an_answer_cut_at_max_tokens_is_an_incomplete_response() -> None:
    cut = {**COMPLETION, "choices": [{**COMPLETION["choices"][0], "finish_reason": "length"}]}
    body = to("openai", {"model": "a", "input": "hi"}).reply(orjson.dumps(cut))
    assert body is not None
    response = Response.model_validate_json(body)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def chunks(parts: list[dict[str, Any]], finish: str, done: bool = True) -> bytes:
    head = {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "g"}
    events = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in parts]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    events.append({**head, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    out = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


TEXT_THEN_CALL = [
    {"role": "assistant", "content": ""},
    {"content": "Let "},
    {"content": "me check."},
    {
        "tool_calls": [
            {
                "index": 0,
                "id": CALL_ID,
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
]


def accumulate(raws: list[bytes]) -> tuple[list[Any], Response]:
    """Every event validated by the SDK's types and fed to its own accumulator."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    events = []
    for raw in raws:
        name, data = raw.split(b"\n", 1)
        event = EVENTS.validate_json(data.removeprefix(b"data: "))
        assert name == b"event: " + event.type.encode()
        state.handle_event(event)
        events.append(event)
    final = [e for e in events if e.type in ("response.completed", "response.incomplete")]
    assert len(final) == 1 and final[0] is events[-1]
    return events, final[0].response


def test_a_chat_stream_becomes_the_documented_event_sequence() -> None:
    tr = to("openai", {"model": "a", "input": "hi", "stream": True})
    events, response = accumulate(tr.splitter().feed(chunks(TEXT_THEN_CALL, "tool_calls")))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert response.id == "resp_s1" and response.model == "g"
    assert response.output_text == "Let me check."
    call = response.output[1]
    assert call.type == "function_call" and call.call_id == CALL_ID
    assert call.arguments == '{"location":"Paris"}'
    assert response.usage is not None and response.usage.output_tokens == 3


def test_the_dialect_holds_the_preamble_back_and_reads_the_usage_at_the_end() -> None:
    tr = to("openai", {"model": "a", "input": "hi", "stream": True})
    raws = tr.splitter().feed(chunks(TEXT_THEN_CALL, "tool_calls"))
    infos = [RESPONSES.inspect(raw) for raw in raws]
    first = next(i for i, info in enumerate(infos) if info.content)
    assert first == 4  # created, in_progress, the message's item and part: preamble
    assert infos[9].content  # a function call's item is output, like Anthropic's tool_use
    assert infos[-1].kind is Kind.DONE
    assert RESPONSES.usage(infos[-1].payload, None) == Usage(7, 3, "g", 0)
    assert RESPONSES.inspect(b"data: {").kind is Kind.MALFORMED
    assert RESPONSES.inspect(b": ping").kind is Kind.COMMENT
    failed = tr.splitter().failed("cut", "upstream_cut")
    assert failed is not None and RESPONSES.inspect(failed.rstrip(b"\n")).kind is Kind.ERROR


def test_a_stream_that_ends_after_its_finish_without_done_is_completed_by_the_encoder() -> None:
    tr = to("openai", {"model": "a", "input": "hi", "stream": True})
    splitter = tr.splitter()
    raws = splitter.feed(chunks([{"role": "assistant"}, {"content": "Hi"}], "stop", done=False))
    assert not any(RESPONSES.inspect(r).kind is Kind.DONE for r in raws)
    _, response = accumulate([*raws, *splitter.end()])
    assert response.status == "completed" and response.output_text == "Hi"
    assert splitter.end()[-1].startswith(b"event: response.completed")  # said once per call
    unfinished = tr.splitter()
    unfinished.feed(b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
    assert unfinished.end() == []  # no finish: the relay calls it cut


def test_a_failed_stream_carries_the_response_so_far() -> None:
    tr = to("openai", {"model": "a", "input": "hi", "stream": True})
    splitter = tr.splitter()
    whole = chunks([{"role": "assistant"}, {"content": "Half"}], "stop")
    raws = splitter.feed(b"\n\n".join(whole.split(b"\n\n")[:2]) + b"\n\n")  # no finish
    failed = splitter.failed("The upstream stream failed.", "upstream_cut")
    assert failed is not None and failed.endswith(b"\n\n")
    event = EVENTS.validate_json(failed.split(b"\n", 2)[1].removeprefix(b"data: "))
    assert event.type == "response.failed" and event.sequence_number == len(raws)
    assert event.response.error is not None and event.response.error.code == "server_error"
    assert event.response.output_text == "Half"


def request(rng: random.Random) -> dict[str, Any]:
    """A Responses request within the translation table's kept subset."""
    words = ["alpha", "beta", "épsilon", "line\nbreak", '"q"', "💡"]

    def say() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))

    items: list[dict[str, Any]] = []
    for turn in range(rng.randint(1, 3)):
        items.append({"role": "user", "content": [{"type": "input_text", "text": say()}]})
        if rng.random() < 0.5:
            call = f"call_{turn}{rng.randint(0, 999)}"
            args = orjson.dumps({"q": say()}).decode()
            items.append({"type": "function_call", "call_id": call, "name": "f", "arguments": args})
            items.append({"type": "function_call_output", "call_id": call, "output": say()})
        if rng.random() < 0.5:
            text = [{"type": "output_text", "text": say(), "annotations": []}]
            items.append({"role": "assistant", "content": text})
    body: dict[str, Any] = {"model": "m", "input": items}
    if rng.random() < 0.5:
        body["instructions"] = say()
    if rng.random() < 0.5:
        body["tools"] = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
        body["tool_choice"] = rng.choice(["auto", "required", {"type": "function", "name": "f"}])
    for key, value in (("max_output_tokens", rng.randint(1, 999)), ("temperature", 0.25)):
        if rng.random() < 0.5:
            body[key] = value
    return body


@pytest.mark.parametrize("seed", range(100))
def test_a_responses_request_is_the_same_request_after_chat_completions(seed: int) -> None:
    body = request(random.Random(seed))
    read = responses_ingress.decode_request(body)
    sent, dropped = openai_upstream.encode_request(read, "m")
    assert read.dropped == frozenset() and dropped == frozenset()
    back = openai_chat.decode_request(sent)
    assert said(back.messages) == said(read.messages)
    assert [t.text for t in back.system] == ["\n\n".join(t.text for t in read.system)] * bool(
        read.system
    )  # one system message, its texts joined
    assert (back.tools, back.tool_choice) == (read.tools, read.tool_choice)
    assert (back.max_tokens, back.temperature) == (read.max_tokens, read.temperature)


def said(messages: tuple[chat.Message, ...]) -> list[tuple[str, list[chat.Part]]]:
    """What the turns say, in order: a turn's texts as one (the model reads them so), tool
    results apart from the words after them (each format holds that boundary its own way)."""
    out: list[tuple[str, list[chat.Part]]] = []
    for m in messages:
        parts: list[chat.Part] = []
        for p in m.parts:
            if isinstance(p, chat.Text) and parts and isinstance(parts[-1], chat.Text):
                parts[-1] = chat.Text(parts[-1].text + p.text)
            else:
                parts.append(p)
        if out and out[-1][0] == m.role and isinstance(out[-1][1][-1], chat.ToolResult):
            out[-1][1].extend(parts)
        else:
            out.append((m.role, parts))
    return out


def test_the_splitter_and_the_relay_agree_on_event_boundaries() -> None:
    tr = to("anthropic", {"model": "a", "input": "hi", "stream": True})
    out = tr.splitter().feed(
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
        b'"model":"c","usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
    )
    assert SseSplitter().feed(b"".join(e + b"\n\n" for e in out)) == out
    assert [RESPONSES.inspect(e).payload["type"] for e in out] == [
        "response.created",
        "response.in_progress",
    ]


def call_delta(index: int, call_id: str = "", name: str = "", args: str = "") -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id or name:
        call.update({"id": call_id, "type": "function"})
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def test_interleaved_calls_stay_open_until_the_finish_and_end_whole() -> None:
    """A server may interleave two calls' argument deltas: neither call is done (its
    `.done` events say its arguments) before the finish."""
    tr = to("openai", {"model": "a", "input": "hi", "stream": True})
    parts = [
        {"role": "assistant", "content": ""},
        call_delta(0, "call_a", "f"),
        call_delta(0, args='{"q":'),
        call_delta(1, "call_b", "g"),
        call_delta(0, args="1}"),
        call_delta(1, args='{"r":2}'),
    ]
    events, response = accumulate(tr.splitter().feed(chunks(parts, "tool_calls")))
    done = {
        e.item_id: e.arguments for e in events if e.type == "response.function_call_arguments.done"
    }
    assert done == {"fc_call_a": '{"q":1}', "fc_call_b": '{"r":2}'}
    assert [(o.call_id, o.arguments) for o in response.output] == [  # type: ignore[union-attr]
        ("call_a", '{"q":1}'),
        ("call_b", '{"r":2}'),
    ]


def test_calls_without_ids_get_ids_of_their_own() -> None:
    tr = to("openai", {"model": "a", "input": "hi", "stream": True})
    parts = [call_delta(0, "", "f", "{}"), call_delta(1, "", "g", "{}")]
    parts[0]["tool_calls"][0]["type"] = parts[1]["tool_calls"][0]["type"] = "function"
    _, response = accumulate(tr.splitter().feed(chunks(parts, "tool_calls")))
    ids = [o.call_id for o in response.output]  # type: ignore[union-attr]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)


def test_a_stream_without_usage_names_none_so_the_gateway_estimates() -> None:
    """Before: a usage of zeros, which metering took for the truth (a key charged nothing)."""
    tr = to("openai", {"model": "a", "input": "hi", "stream": True})
    head = {"id": "chatcmpl-n", "object": "chat.completion.chunk", "model": "g"}
    raw = b"".join(
        b"data: "
        + orjson.dumps({**head, "choices": [{"index": 0, "delta": d, "finish_reason": f}]})
        + b"\n\n"
        for d, f in (({"content": "Hi"}, None), ({}, "stop"))
    )
    events, response = accumulate(tr.splitter().feed(raw + b"data: [DONE]\n\n"))
    assert response.usage is None and response.output_text == "Hi"
    last = RESPONSES.inspect(b"data: " + orjson.dumps(events[-1].model_dump(exclude_none=True)))
    assert RESPONSES.usage(last.payload, None) == Usage(response_model="g")


def test_a_call_then_words_in_input_are_one_assistant_turn() -> None:
    """What `input += response.output` sends after a call-then-text answer: the call and the
    words are one assistant turn, its result follows (two assistant turns in a row, the
    call's first, make OpenAI refuse the conversation)."""
    body = {
        "model": "a",
        "input": [
            {"role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
        ],
    }
    messages = to("openai", body).body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["content"] == "calling" and messages[1]["tool_calls"][0]["id"] == "c1"


def test_a_gemini_signature_rides_the_function_call_item_and_goes_back() -> None:
    answer = {
        "responseId": "r-1",
        "modelVersion": "gemini-3-pro",
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "f", "args": {"q": 1}},
                            "thoughtSignature": "c2ln",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ],
    }
    tr = to("gemini", {"model": "a", "input": "hi", "tools": [{"type": "function", "name": "f"}]})
    body = tr.reply(orjson.dumps(answer))
    assert body is not None
    [call] = Response.model_validate_json(body).output
    item = call.model_dump(exclude_none=True)
    assert item["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    again = {"model": "a", "input": [{"role": "user", "content": "hi"}, item]}
    sent = to("gemini", again).body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "c2ln" and sent["functionCall"]["name"] == "f"


def test_a_strict_function_stays_strict_where_the_target_has_strict_mode() -> None:
    """The SDK makes every Responses function tool say `strict` (its type requires it): an
    OpenAI target keeps it; Anthropic (only behind a beta) and Gemini name it dropped."""
    tool = {**WEATHER, "strict": True}
    body = {"model": "a", "input": "hi", "tools": [tool]}
    to_openai = to("openai", body)
    assert to_openai.dropped == frozenset()
    assert to_openai.body["tools"][0]["function"]["strict"] is True
    for target in ("anthropic", "gemini"):
        assert to(target, body).dropped == {"tools.strict"}
    assert "strict" not in to("openai", {**body, "tools": [WEATHER]}).body["tools"][0]["function"]
