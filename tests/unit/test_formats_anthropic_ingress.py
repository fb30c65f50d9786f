"""The Anthropic -> OpenAI translation (an Anthropic client, an OpenAI-format target), golden:
requests, answers and stream events as Anthropic's Messages API documents them, checked
against the `anthropic` SDK's own types (and its own stream accumulator)."""

from __future__ import annotations

import dataclasses
from typing import Any

import anthropic.types as at
import orjson
import pytest
from anthropic.types.shared import ErrorResponse

from gateway.formats import chat, openai_chat, openai_upstream
from gateway.formats.translate import Translation, crosses, serves, translation, unfit

# The tool-use conversation of Anthropic's docs ("How to implement tool use").
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state"}},
        "required": ["location"],
    },
}
TOOL_ID = "toolu_01A09q90qw90lq917835lq9"
MESSAGES: dict[str, Any] = {
    "model": "alias",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "You are a helpful assistant."}],
    "messages": [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check."},
                {
                    "type": "tool_use",
                    "id": TOOL_ID,
                    "name": "get_weather",
                    "input": {"location": "San Francisco, CA"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": TOOL_ID, "content": "15 degrees"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {"type": "text", "text": "And here?"},
            ],
        },
    ],
    "tools": [WEATHER],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "temperature": 0.5,
    "top_p": 0.9,
    "stop_sequences": ["\n\nHuman:"],
    "metadata": {"user_id": "u-1"},
}


def to_openai(payload: dict[str, Any]) -> Translation:
    tr = translation(payload, "chat", "openai", "gpt-4o", "anthropic")
    assert tr is not None and tr.path == "/chat/completions"
    assert (tr.source, tr.target) == ("anthropic", "openai")
    return tr


def test_a_messages_request_becomes_a_chat_completions_request() -> None:
    tr = to_openai(MESSAGES)
    assert tr.dropped == frozenset() and tr.note == "anthropic->openai"
    assert tr.body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {
                "role": "assistant",
                "content": "I'll check.",
                "tool_calls": [
                    {
                        "id": TOOL_ID,
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"location":"San Francisco, CA"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": TOOL_ID, "content": "15 degrees"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    {"type": "text", "text": "And here?"},
                ],
            },
        ],
        "max_tokens": 1024,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n\nHuman:"],
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": WEATHER["description"],
                    "parameters": WEATHER["input_schema"],
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }


def test_a_stream_asks_for_the_usage_and_a_named_tool_choice_maps() -> None:
    body = {**MESSAGES, "stream": True, "tool_choice": {"type": "tool", "name": "get_weather"}}
    out = to_openai(body).body
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize(
    ("extra", "dropped"),
    [
        ({"top_k": 5}, {"top_k"}),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, {"thinking"}),
        ({"thinking": {"type": "disabled"}}, set()),  # neutral: not a loss
        ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]},
         {"cache_control"}),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
         {"tools.web_search_20250305"}),
        ({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "data": "d"}}]}]},
         {"content.document"}),
        ({"metadata": {"user_id": "u", "tier": "x"}}, {"metadata"}),
    ],
)  # fmt: skip
def test_what_has_no_place_is_named(extra: dict[str, Any], dropped: set[str]) -> None:
    tr = to_openai({**MESSAGES, **extra})
    assert tr.dropped == dropped
    if dropped:
        assert tr.note.startswith("anthropic->openai; lossy; dropped=")


def completion(message: dict[str, Any], finish: str, usage: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "object": "chat.completion",
            "created": 1,
            "model": "claude-sonnet-4-20250514",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
    )


def test_an_answer_becomes_the_documented_message() -> None:
    body = completion(
        {"role": "assistant", "content": "Hi! My name is Claude."},
        "stop",
        {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598},
    )
    out = to_openai(MESSAGES).reply(body)
    assert out is not None
    message = orjson.loads(out)
    assert message == {  # Anthropic's documented response, with the cache counts
        "content": [{"text": "Hi! My name is Claude.", "type": "text"}],
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "model": "claude-sonnet-4-20250514",
        "role": "assistant",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "type": "message",
        "usage": {
            "input_tokens": 2095,
            "output_tokens": 503,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    at.Message.model_validate(message)


def test_a_tool_call_answer_keeps_its_id_and_cached_tokens_are_anthropics_reads() -> None:
    call = {
        "id": TOOL_ID,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "San Francisco, CA"}'},
    }
    body = completion(
        {"role": "assistant", "content": None, "tool_calls": [call]},
        "tool_calls",
        {
            "prompt_tokens": 100,
            "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 64},
        },
    )
    out = to_openai(MESSAGES).reply(body)
    assert out is not None
    message = at.Message.model_validate_json(out)
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.id == TOOL_ID
    assert block.input == {"location": "San Francisco, CA"}
    assert message.usage.input_tokens == 36 and message.usage.cache_read_input_tokens == 64


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
     ("content_filter", "refusal")],
)  # fmt: skip
def test_finish_reasons_become_stop_reasons(finish: str, stop: str) -> None:
    body = completion({"role": "assistant", "content": "x"}, finish, {})
    out = to_openai(MESSAGES).reply(body)
    assert out is not None and orjson.loads(out)["stop_reason"] == stop


def test_what_is_not_a_completion_is_not_taken_for_one() -> None:
    tr = to_openai(MESSAGES)
    for body in (b"not json", b"[]", b'{"object": "list"}', b'{"choices": []}'):
        assert tr.reply(body) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
     (404, "not_found_error"), (429, "rate_limit_error"), (500, "api_error"),
     (503, "overloaded_error")],
)  # fmt: skip
def test_an_error_comes_back_in_anthropics_shape(status: int, kind: str) -> None:
    body = orjson.dumps({"error": {"message": "Slow down", "type": "x", "code": None}})
    out = orjson.loads(to_openai(MESSAGES).error(status, body))
    assert out == {"type": "error", "error": {"type": kind, "message": "Slow down"}}
    ErrorResponse.model_validate(out)
    assert orjson.loads(to_openai(MESSAGES).error(status, b"<html>"))["error"]["message"]


# -- the pairs translate.py knows ---------------------------------------------------------------


def test_an_anthropic_client_is_translated_to_a_gemini_target_too() -> None:
    tr = translation(MESSAGES, "chat", "gemini", "gemini-flash", "anthropic")
    assert tr is not None and tr.path == "/models/gemini-flash:generateContent"
    # a URL image cannot be inlined; Gemini has no parallel switch and no end-user id
    assert tr.dropped == {"content.image_url", "parallel_tool_calls", "user"}
    call, result = tr.body["contents"][1]["parts"][1], tr.body["contents"][2]["parts"][0]
    assert call["functionCall"] == {
        "id": TOOL_ID,
        "name": "get_weather",
        "args": {"location": "San Francisco, CA"},
    }
    assert result["functionResponse"] == {
        "id": TOOL_ID,
        "name": "get_weather",  # Gemini wants the function's name: found by the call's id
        "response": {"output": "15 degrees"},
    }
    assert tr.body["systemInstruction"] == {"parts": [{"text": "You are a helpful assistant."}]}
    assert tr.body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert unfit(MESSAGES, "chat", "gemini", "g", strict=False, source="anthropic") is None
    strict = unfit(MESSAGES, "chat", "gemini", "g", strict=True, source="anthropic")
    assert (
        strict
        == "lossy translation to gemini: would drop content.image_url,parallel_tool_calls,user"
    )
    assert unfit(MESSAGES, "chat", "openai", "g", strict=False, source="anthropic") is None
    assert unfit(MESSAGES, "chat", "anthropic", "c", strict=True, source="anthropic") is None
    assert crosses("anthropic", "gemini") and crosses("openai", "gemini")
    assert serves("chat", "gemini", "anthropic") and not serves("embeddings", "gemini", "anthropic")
    # A client format with no translations at all: named, never guessed
    assert not crosses("cohere", "openai")
    with pytest.raises(ValueError, match="no translation from cohere to a openai target"):
        translation(MESSAGES, "chat", "openai", "m", "cohere")


def test_a_translated_answer_without_a_model_names_the_targets() -> None:
    tr = to_openai(MESSAGES)
    body = {"id": "c", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}
    message = orjson.loads(tr.reply(orjson.dumps(body)) or b"")
    assert message["model"] == "gpt-4o" and message["content"] == [{"type": "text", "text": "hi"}]


def test_the_openai_upstream_codec_carries_what_the_chat_model_holds() -> None:
    """Fields an Anthropic client cannot send, but the chat model (and OpenAI) can: read back
    by the OpenAI client codec, they are what was encoded."""
    req = chat.ChatRequest(
        model="m",
        messages=(chat.Message("user", (chat.Text("hi"),)),),
        seed=7,
        n=2,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        response_format=chat.ResponseFormat({"type": "object"}, "answer", strict=True),
    )
    body, dropped = openai_upstream.encode_request(req, "gpt-4o")
    assert dropped == frozenset()
    back = openai_chat.decode_request(body)
    assert (back.seed, back.n, back.presence_penalty, back.frequency_penalty) == (7, 2, 0.5, -0.5)
    assert back.response_format == req.response_format and back.dropped == frozenset()
    json_mode = dataclasses.replace(req, response_format=chat.ResponseFormat())
    assert openai_upstream.encode_request(json_mode, "m")[0]["response_format"] == {
        "type": "json_object"
    }
