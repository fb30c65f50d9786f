"""The OpenAI -> Anthropic translation (gateway/formats), golden: requests as Anthropic's Messages
API documents them, answers and stream events from its documented examples, checked against
the `anthropic` SDK's own types where it has them."""

from __future__ import annotations

from typing import Any

import anthropic.types as at
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from gateway.formats.translate import translation

CHAT: dict[str, Any] = {
    "model": "alias",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18 C, sunny"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        },
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "max_tokens": 300,
    "temperature": 0.5,
    "top_p": 0.9,
    "stop": ["\n\n"],
    "user": "u-1",
}


def _anthropic(payload: dict[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    tr = translation(payload, "chat", "anthropic", "claude-sonnet-4")
    assert tr is not None and tr.path == "/messages"
    return tr.body, tr.dropped


def test_a_chat_request_becomes_a_messages_request() -> None:
    body, dropped = _anthropic(CHAT)
    assert dropped == frozenset()
    assert body == {
        "model": "claude-sonnet-4",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is the weather in Paris?"}],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_abc",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {  # the tool's result and the user's next words: one user turn
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_abc",
                        "content": [{"type": "text", "text": "18 C, sunny"}],
                    },
                    {"type": "text", "text": "And this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["\n\n"],
        "metadata": {"user_id": "u-1"},
    }


def test_what_has_no_place_is_named_and_neutral_values_are_not_losses() -> None:
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "n": 1,
        "logprobs": False,
        "presence_penalty": 0,
        "seed": 7,
        "logit_bias": {"50256": -100},
        "response_format": {"type": "json_object"},
        "temperature": 1.5,
    }
    body, dropped = _anthropic(payload)
    assert dropped == {"seed", "logit_bias", "response_format", "temperature"}
    assert body["temperature"] == 1.0  # clamped into Anthropic's range, and said so
    assert body["max_tokens"] == 4096  # required there: a default


def test_a_mid_conversation_system_message_and_a_foreign_tool_id() -> None:
    payload = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Be brief."},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "fc/1.2",
                        "type": "function",
                        "function": {"name": "f", "arguments": "x"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "fc/1.2", "content": "ok"},
        ],
    }
    body, dropped = _anthropic(payload)
    assert {"system_position", "tool_calls.arguments"} <= dropped
    use = body["messages"][1]["content"][0]
    result = body["messages"][2]["content"][0]
    assert use["id"] == result["tool_use_id"] == "fc_1_2"  # mapped, the same both times
    assert use["input"] == {}


MESSAGE = {  # Anthropic's documented example answer, with a tool call
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQB..."},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "output_tokens": 35,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 5,
    },
}


def test_an_answer_becomes_a_chat_completion() -> None:
    at.Message.model_validate(MESSAGE)  # the example is a real Message
    tr = translation(CHAT, "chat", "anthropic", "claude")
    assert tr is not None
    out = tr.reply(orjson.dumps(MESSAGE))
    assert out is not None
    completion = ChatCompletion.model_validate_json(out)  # and ours a real ChatCompletion
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01A" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (125, 35)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 100
    assert completion.model == "claude-sonnet-4-20250514"
    assert orjson.loads(out)["choices"][0]["message"]["reasoning_content"] == (
        "The user wants weather."
    )


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    tr = translation(CHAT, "chat", "anthropic", "claude")
    assert tr is not None
    out = tr.reply(orjson.dumps({**MESSAGE, "stop_reason": stop}))
    assert out is not None and orjson.loads(out)["choices"][0]["finish_reason"] == finish


def test_what_is_not_an_answer_is_not_taken_for_one() -> None:
    tr = translation(CHAT, "chat", "anthropic", "claude")
    assert tr is not None
    for body in (b"{", b"[]", b'{"type": "error", "error": {"type": "api_error"}}', b'{"id": 1}'):
        assert tr.reply(body) is None


def test_an_error_comes_back_in_openais_shape() -> None:
    tr = translation(CHAT, "chat", "anthropic", "claude")
    assert tr is not None
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}'
    err = orjson.loads(tr.error(400, body))["error"]
    assert err["type"] == "invalid_request_error"
    assert err["message"] == "prompt is too long: 250000 tokens > 200000 maximum"
    assert err["code"] == "context_length_exceeded"  # what OpenAI's clients look for
    assert orjson.loads(tr.error(429, b"junk"))["error"]["message"] == "upstream error 429"


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


STREAM = [  # Anthropic's documented stream, with a tool call after the text
    _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        },
    ),
    _sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    _sse("ping", {"type": "ping"}),
    _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello"},
        },
    ),
    _sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    ),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    _sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        },
    ),
    _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": '},
        },
    ),
    _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "1}"},
        },
    ),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    ),
    _sse("message_stop", {"type": "message_stop"}),
]


def _translated_stream(payload: dict[str, Any], pieces: list[bytes]) -> list[bytes]:
    tr = translation({**payload, "stream": True}, "chat", "anthropic", "claude")
    assert tr is not None and tr.body["stream"] is True
    splitter = tr.splitter()
    out: list[bytes] = []
    for piece in pieces:
        out.extend(splitter.feed(piece))
    return out


def test_a_stream_is_translated_event_by_event_into_chunks() -> None:
    events = TypeAdapter(at.RawMessageStreamEvent)
    for event in STREAM:  # the examples are real stream events (ping has no type in the SDK)
        if not event.startswith(b"event: ping"):
            events.validate_json(event.split(b"data: ", 1)[1])
    payload = {**CHAT, "stream_options": {"include_usage": True}}
    raw = b"".join(STREAM)
    # Split anywhere: one byte at a time gives the same events as the whole.
    whole = _translated_stream(payload, [raw])
    assert _translated_stream(payload, [raw[i : i + 1] for i in range(len(raw))]) == whole
    assert whole[-1] == b"data: [DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e[6:]) for e in whole[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant" and not chunks[0].choices[0].delta.content
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello!"
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "toolu_9" and calls[0].function and calls[0].function.name == "f"
    args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert orjson.loads(args) == {"a": 1} and {tc.index for tc in calls} == {0}
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (25, 15)
    assert {c.id for c in chunks} == {
        "chatcmpl-1"
    }  # Anthropic's msg_1, OpenAI's prefix and {c.model for c in chunks} == {"claude-sonnet-4"}


def test_a_stream_error_and_a_broken_event_keep_their_meaning() -> None:
    error = _sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    out = _translated_stream(
        CHAT, [STREAM[0], b'event: content_block_delta\ndata: {"type": \n\n', error]
    )
    assert out[1] == b"data: {"  # unreadable: the relay's malformed rules apply to it
    err = orjson.loads(out[2][6:])["error"]
    assert err["message"] == "Overloaded" and err["code"] == "overloaded"
    no_usage = _translated_stream(CHAT, STREAM)  # without include_usage: no usage chunk
    assert no_usage[-1] == b"data: [DONE]" and b'"usage"' not in no_usage[-2]


def test_only_chat_crosses_formats() -> None:
    assert translation(CHAT, "chat", "openai", "m") is None  # the same format: as it is
    with pytest.raises(ValueError):
        translation({"model": "m", "input": "x"}, "embeddings", "anthropic", "m")


# -- what the fuzzer found (ops.fuzz against an Anthropic-format target). The note test, the
# odd index and two of the odd types failed before; the other odd types were read right
# already and stay as coverage.


def test_the_translation_note_names_only_plain_keys_and_only_a_few() -> None:
    payload: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    payload.update({f"k{i:03}": 1 for i in range(40)})
    payload["x\r\nx-evil: 1"] = 1  # before: a header with CR LF in it (the gateway's 500)
    payload["y" * 10_000] = 1  # before: a header too long for any client to read
    tr = translation(payload, "chat", "anthropic", "c")
    assert tr is not None
    assert tr.note == (
        "openai->anthropic; lossy; dropped=k000,k001,k002,k003,k004,k005,k006,k007,k008,k009,"
        "k010,k011,+30 more"
    )


@pytest.mark.parametrize(
    "oddity",
    [
        {"stop": 5.0},
        {"stop": [1, "x", None]},
        {"tool_choice": ["auto"]},
        {"tools": {"type": "function"}},
        {"messages": [{"role": ["user"], "content": "hi"}]},
        {"messages": [{"role": "user", "content": [{"type": ["text"], "text": "x"}]}]},
        {"messages": [{"role": "assistant", "tool_calls": {"id": "x"}}]},
        {"messages": [{"role": "assistant", "tool_calls": [{"function": "f"}, 3]}]},
        {"messages": [{"role": "tool", "content": {"a": 1}}]},
        {"logit_bias": [1, 2]},
    ],
)
def test_odd_types_are_dropped_never_a_crash(oddity: dict[str, Any]) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **oddity}
    tr = translation(payload, "chat", "anthropic", "c")  # before: TypeError for several
    assert tr is not None and orjson.dumps(tr.body)


def test_a_stream_event_with_an_odd_index_is_not_a_crash() -> None:
    odd = _sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": [1],
            "content_block": {"type": "tool_use", "id": "t", "name": "f"},
        },
    )
    delta = _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": {"a": 1},
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
    )
    out = _translated_stream(CHAT, [STREAM[0], odd, delta])  # before: unhashable index
    assert len(out) == 3  # the role chunk, the call and its arguments: read, not a crash


def test_a_content_chunk_from_the_template_is_the_chunk_itself() -> None:
    from gateway.formats import chat
    from gateway.formats.openai_events import StreamEncoder

    enc = StreamEncoder(include_usage=False)
    enc.encode(chat.Started('msg_"1"', "claude\u00e9", None))
    for text in ("plain", 'a "quote" \\ and \n newline', "\u00e9\U0001f600", "</script>"):
        [fast] = enc.encode(chat.TextDelta(text))
        assert fast == enc._chunk({"content": text})  # byte for byte, the dict's own encoding
