"""The OpenAI -> Gemini translation (gateway/formats), golden: requests as the Generative
Language API documents them, answers, stream chunks and errors from Google's documented
examples, each checked against the `google-genai` SDK's own types (which forbid unknown
fields) where it has them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google.genai import types
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.formats import chat
from gateway.formats import gemini_generate as gemini
from gateway.formats.gemini_response import tool_id
from gateway.formats.translate import translation
from health.outcome import OutcomeKind, classify_status, context_exceeded

CHAT: dict[str, Any] = {
    "model": "alias",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
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
            ],
        },
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "max_completion_tokens": 300,
    "temperature": 1.5,
    "top_p": 0.9,
    "stop": ["\n\n"],
}


def _gemini(payload: dict[str, Any], model: str = "gemini-2.5-flash") -> Any:
    tr = translation(payload, "chat", "gemini", model)
    assert tr is not None
    return tr


def _valid(body: dict[str, Any]) -> None:
    """Every part of the body is a real google-genai type (unknown fields are errors there)."""
    for content in body["contents"]:
        types.Content.model_validate(content)
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    for tool in body.get("tools", ()):
        types.Tool.model_validate(tool)
    if "toolConfig" in body:
        types.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


def test_a_chat_request_becomes_a_generate_content_request() -> None:
    tr = _gemini(CHAT)
    assert tr.path == "/models/gemini-2.5-flash:generateContent"
    assert tr.dropped == frozenset() and tr.note == "openai->gemini"
    _valid(tr.body)
    assert tr.body == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Let me check."},
                    {
                        "functionCall": {
                            "id": "call_abc",
                            "name": "get_weather",
                            "args": {"city": "Paris"},
                        }
                    },
                ],
            },
            {  # the tool's result and the user's next words: one user turn
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "call_abc",
                            "name": "get_weather",  # from the call of that id
                            "response": {"output": "18 C, sunny"},
                        }
                    },
                    {"text": "And this?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parametersJsonSchema": CHAT["tools"][0]["function"]["parameters"],
                    }
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
        "generationConfig": {
            "temperature": 1.5,  # Gemini's range is OpenAI's: 0 to 2
            "topP": 0.9,
            "maxOutputTokens": 300,
            "stopSequences": ["\n\n"],
        },
    }


def test_the_path_names_the_model_and_a_stream_asks_for_sse() -> None:
    assert gemini.path("gemini-2.5-flash", True) == (
        "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )
    assert (
        gemini.path("models/gemini-2.0-flash", False) == "/models/gemini-2.0-flash:generateContent"
    )
    assert gemini.path("tunedModels/my-1", False) == "/tunedModels/my-1:generateContent"
    assert gemini.path("a b?c", False) == "/models/a%20b%3Fc:generateContent"
    tr = _gemini({**CHAT, "stream": True})
    assert tr.path.endswith(":streamGenerateContent?alt=sse") and "stream" not in tr.body


def test_sampling_json_mode_and_seed_are_carried() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    tr = _gemini(
        {
            **base,
            "n": 2,
            "seed": 42,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": schema, "strict": True},
            },
        }
    )
    assert tr.dropped == frozenset()
    _valid(tr.body)
    assert tr.body["generationConfig"] == {
        "candidateCount": 2,
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    json_mode = _gemini({**base, "response_format": {"type": "json_object"}})
    assert json_mode.body["generationConfig"] == {"responseMimeType": "application/json"}
    neutral = _gemini(
        {
            **base,
            "n": 1,
            "presence_penalty": 0,
            "logprobs": False,
            "response_format": {"type": "text"},
        }
    )
    assert neutral.dropped == frozenset() and "generationConfig" not in neutral.body


def test_what_gemini_cannot_carry_is_named() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    tr = _gemini(
        {
            **base,
            "user": "u-1",
            "logit_bias": {"50256": -100},
            "seed": 2**40,  # Gemini's seed is an int32
            "parallel_tool_calls": False,
            "tools": CHAT["tools"],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                    ],
                }
            ],
        }
    )
    assert tr.dropped == {
        "user",
        "logit_bias",
        "seed",
        "parallel_tool_calls",
        "content.image_url",
        "content.input_audio",
    }
    assert _gemini({**base, "n": 3, "stream": True}).dropped == {"n"}  # one answer per stream


def test_tool_choice_modes() -> None:
    def mode(choice: Any) -> Any:
        body = _gemini({**CHAT, "tool_choice": choice}).body
        return body["toolConfig"]["functionCallingConfig"]

    assert mode("auto") == {"mode": "AUTO"}
    assert mode("none") == {"mode": "NONE"}
    assert mode("required") == {"mode": "ANY"}
    no_tools = {k: v for k, v in CHAT.items() if k not in ("tools", "tool_choice")}
    assert "toolConfig" not in _gemini({**no_tools, "tool_choice": "auto"}).body


def test_results_without_a_call_and_arguments_that_are_not_an_object() -> None:
    payload = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t/1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            },
            {"role": "tool", "tool_call_id": "t/1", "content": "ok"},
            {"role": "tool", "tool_call_id": "nobody", "content": "lost"},
        ],
    }
    tr = _gemini(payload)
    assert tr.dropped == {"tool_calls.arguments", "messages.tool_call_id"}
    model, results = tr.body["contents"][1:]
    assert model["parts"] == [{"functionCall": {"id": "t/1", "name": "f", "args": {}}}]
    assert results["parts"] == [
        {"functionResponse": {"id": "t/1", "name": "f", "response": {"output": "ok"}}},
        {"text": "lost"},  # a result of no call: Gemini would refuse it as one
    ]


def test_reasoning_is_sent_back_only_to_gemini_with_its_signature() -> None:
    req = chat.ChatRequest(
        "m",
        (
            chat.Message("user", (chat.Text("hi"),)),
            chat.Message(
                "assistant",
                (
                    chat.Thinking("mine", "c2ln", "gemini"),
                    chat.Thinking("theirs", "EqQB", "anthropic"),
                    chat.Text("hello"),
                ),
            ),
        ),
    )
    body, dropped = gemini.encode_request(req, "m")
    assert dropped == {"thinking"}
    assert body["contents"][1]["parts"] == [
        {"text": "mine", "thought": True, "thoughtSignature": "c2ln"},
        {"text": "hello"},
    ]


# -- answers, from the documented examples ------------------------------------------------------

FUNCTION_CALL = {  # the function-calling guide's answer
    "candidates": [
        {
            "content": {
                "parts": [
                    {
                        "functionCall": {
                            "name": "get_current_weather",
                            "args": {"location": "Boston, MA"},
                        }
                    }
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}
            ],
        }
    ],
    "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 8, "totalTokenCount": 38},
    "modelVersion": "gemini-2.0-flash",
    "responseId": "kR9ZaKXyBsK7nvgPq4vN4Q0",
}
TEXT = {  # a text answer, with the usage details newer models report
    "candidates": [
        {
            "content": {"parts": [{"text": "AI learns "}, {"text": "patterns."}], "role": "model"},
            "finishReason": "STOP",
            "avgLogprobs": -0.21,
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 1208,
        "candidatesTokenCount": 5,
        "totalTokenCount": 1313,
        "cachedContentTokenCount": 1000,
        "thoughtsTokenCount": 100,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1208}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "abc123",
}


def _completion(answer: dict[str, Any], payload: dict[str, Any] = CHAT) -> ChatCompletion:
    types.GenerateContentResponse.model_validate(answer)  # the example is a real response
    out = _gemini(payload).reply(orjson.dumps(answer))
    assert out is not None
    return ChatCompletion.model_validate_json(out)  # and ours a real chat completion


def test_a_function_call_becomes_a_tool_call_with_a_derived_id() -> None:
    completion = _completion(FUNCTION_CALL)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"  # Gemini says STOP
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    args = call.function.arguments  # type: ignore[union-attr]
    assert orjson.loads(args) == {"location": "Boston, MA"}
    assert call.id == tool_id("kR9ZaKXyBsK7nvgPq4vN4Q0", 0, "get_current_weather", args)
    again = _completion(FUNCTION_CALL).choices[0].message.tool_calls or []
    assert again[0].id == call.id  # the same answer, the same id
    other = _completion({**FUNCTION_CALL, "responseId": "other"}).choices[0].message.tool_calls
    assert other and other[0].id != call.id  # another answer, another
    assert (
        completion.id == "chatcmpl-kR9ZaKXyBsK7nvgPq4vN4Q0"
        and completion.model == "gemini-2.0-flash"
    )
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 8)


def test_a_call_with_geminis_own_id_keeps_it() -> None:
    part = {"functionCall": {"id": "fc_7", "name": "f", "args": {}}}
    answer = {
        **FUNCTION_CALL,
        "candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}],
    }
    [call] = _completion(answer).choices[0].message.tool_calls or []
    assert call.id == "fc_7"


def test_a_text_answer_and_its_usage() -> None:
    completion = _completion(TEXT)
    assert completion.choices[0].message.content == "AI learns patterns."
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == 1208  # the cached part included, as OpenAI counts it
    assert usage.prompt_tokens_details.cached_tokens == 1000
    assert usage.completion_tokens == 105  # thoughts are output, as OpenAI's reasoning is


def test_an_answer_without_a_model_names_the_one_asked_for() -> None:
    answer = {k: v for k, v in TEXT.items() if k not in ("modelVersion", "responseId")}
    completion = _completion(answer)
    assert completion.model == "gemini-2.5-flash" and completion.id.startswith("chatcmpl-")


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    answer = {**TEXT, "candidates": [{**TEXT["candidates"][0], "finishReason": reason}]}  # type: ignore[dict-item]
    assert _completion(answer).choices[0].finish_reason == finish


def test_a_blocked_prompt_is_a_content_filter() -> None:
    blocked = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
            ],
        },
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": "gemini-2.0-flash",
    }
    choice = _completion(blocked).choices[0]
    assert choice.finish_reason == "content_filter" and choice.message.content is None


def test_candidates_become_choices() -> None:
    second = {
        "content": {"parts": [{"text": "Two."}], "role": "model"},
        "finishReason": "MAX_TOKENS",
        "index": 1,
    }
    answer = {**TEXT, "candidates": [second, TEXT["candidates"][0]]}  # type: ignore[list-item]
    choices = _completion(answer).choices
    assert [(c.index, c.message.content, c.finish_reason) for c in choices] == [
        (0, "AI learns patterns.", "stop"),
        (1, "Two.", "length"),
    ]


def test_thought_summaries_become_reasoning_content() -> None:
    parts = [
        {"text": "Thinking about it.", "thought": True},
        {"text": "Yes.", "thoughtSignature": "c2ln"},
    ]
    answer = {
        **TEXT,
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP"}],
    }
    types.GenerateContentResponse.model_validate(answer)
    out = _gemini(CHAT).reply(orjson.dumps(answer))
    assert out is not None
    message = orjson.loads(out)["choices"][0]["message"]
    assert message["content"] == "Yes." and message["reasoning_content"] == "Thinking about it."


def test_a_signed_call_keeps_its_signature_to_the_client_and_back_to_gemini_only() -> None:
    """Gemini 3 signs its function calls (`thoughtSignature` on the call's part) and refuses
    a conversation that sends a call back without it: the signature rides the OpenAI tool
    call as Google's OpenAI-compatible endpoint carries it, and goes back to Gemini alone."""
    part = {**FUNCTION_CALL["candidates"][0]["content"]["parts"][0], "thoughtSignature": "c2ln"}  # type: ignore[index]
    content = {"parts": [part], "role": "model"}
    answer = {**FUNCTION_CALL, "candidates": [{"content": content, "finishReason": "STOP"}]}
    [call] = _completion(answer).choices[0].message.tool_calls or []
    extra = call.model_dump()["extra_content"]
    assert extra == {"google": {"thought_signature": "c2ln"}}
    stream_body = b"data: " + orjson.dumps(answer) + b"\n\n"
    chunks = _gemini({**CHAT, "stream": True}).splitter().feed(stream_body)
    started = orjson.loads(chunks[1].removeprefix(b"data: "))["choices"][0]["delta"]
    assert started["tool_calls"][0]["extra_content"] == extra  # the stream says it too
    assistant = {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}
    result = {"role": "tool", "tool_call_id": call.id, "content": "22C"}
    turns = {**CHAT, "messages": [*CHAT["messages"][:2], assistant, result]}
    sent = _gemini(turns).body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "c2ln" and sent["functionCall"]["id"] == call.id
    # never another vendor's business:
    to_claude = translation(turns, "chat", "anthropic", "claude")
    assert to_claude is not None and b"c2ln" not in orjson.dumps(to_claude.body)


def test_what_is_not_an_answer_is_not_taken_for_one() -> None:
    tr = _gemini(CHAT)
    for body in (b"{", b"[]", b'{"error": {"code": 500}}', b'{"id": 1}', b'{"candidates": 3}'):
        assert tr.reply(body) is None


# -- errors -------------------------------------------------------------------------------------

QUOTA = {  # the rate-limits guide's 429
    "error": {
        "code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaValue": "15",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{"description": "Learn more about Gemini API quotas", "url": "x"}],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "52s"},
        ],
    }
}
KEY_INVALID = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ],
    }
}
TOO_LONG = {
    "error": {
        "code": 400,
        "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        "status": "INVALID_ARGUMENT",
    }
}
LOCATION = {
    "error": {
        "code": 400,
        "message": "User location is not supported for the API use.",
        "status": "FAILED_PRECONDITION",
    }
}
OVERLOADED = {
    "error": {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
    }
}


def _error(status: int, body: dict[str, Any]) -> dict[str, Any]:
    err: dict[str, Any] = orjson.loads(_gemini(CHAT).error(status, orjson.dumps(body)))["error"]
    return err


def test_errors_come_back_in_openais_shape() -> None:
    assert _error(429, QUOTA) == {
        "message": QUOTA["error"]["message"],
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
        "param": None,
    }
    too_long = _error(400, TOO_LONG)
    assert too_long["code"] == "context_length_exceeded" and too_long["param"] == "messages"
    assert too_long["type"] == "invalid_request_error"
    assert _error(503, OVERLOADED)["code"] == "overloaded"
    assert _error(400, KEY_INVALID)["type"] == "authentication_error"
    tr = _gemini(CHAT)
    assert orjson.loads(tr.error(500, b"junk"))["error"]["message"] == "upstream error 500"


def _classified(status: int, body: dict[str, Any], retry_after: str | None = None) -> Any:
    status, retry_after = _gemini(CHAT).evidence(status, retry_after, orjson.dumps(body))
    return classify_status(status, retry_after=retry_after)


def test_what_an_error_says_in_its_body_reaches_the_classification() -> None:
    throttled = _classified(429, QUOTA)
    assert throttled.kind is OutcomeKind.THROTTLED and throttled.retry_after_s == 52.0
    assert _classified(429, QUOTA, retry_after="3").retry_after_s == 3.0  # a header wins
    assert _classified(400, KEY_INVALID).kind is OutcomeKind.MISCONFIGURED  # not the caller's
    assert _classified(400, LOCATION).kind is OutcomeKind.MISCONFIGURED  # this target can't
    assert _classified(503, OVERLOADED).kind is OutcomeKind.PROVIDER_FAILURE
    assert _classified(400, TOO_LONG).kind is OutcomeKind.CALLER_ERROR
    assert context_exceeded(400, orjson.dumps(TOO_LONG))  # a larger model may take it
    assert _gemini(CHAT).evidence(400, None, b"junk") == (400, None)
    half = {
        "error": {
            "code": 429,
            "details": [{"@type": QUOTA["error"]["details"][2]["@type"], "retryDelay": "0.5s"}],
        }
    }  # type: ignore[index]
    assert _classified(429, half).retry_after_s == 0.5


# -- streams ------------------------------------------------------------------------------------


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"


def _chunk(parts: list[dict[str, Any]], finish: str | None = None, **usage: int) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    answer = {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 25, **usage},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "r-1",
    }
    types.GenerateContentResponse.model_validate(answer)
    return _sse(answer)


STREAM = [  # the streaming guide's chunks, a call in the last
    _chunk([{"text": "Hello"}], totalTokenCount=25),
    _chunk([{"text": " there"}], totalTokenCount=25),
    _chunk(
        [
            {"functionCall": {"name": "f", "args": {"a": 1}}},
            {"functionCall": {"name": "g", "args": {}}},
        ],
        "STOP",
        candidatesTokenCount=15,
        totalTokenCount=40,
    ),
]


def _translated(payload: dict[str, Any], pieces: list[bytes]) -> list[bytes]:
    tr = _gemini({**payload, "stream": True})
    splitter = tr.splitter()
    out: list[bytes] = []
    for piece in pieces:
        out.extend(splitter.feed(piece))
    return out


def test_a_stream_is_translated_chunk_by_chunk() -> None:
    payload = {**CHAT, "stream_options": {"include_usage": True}}
    raw = b"".join(STREAM)
    whole = _translated(payload, [raw])
    assert _translated(payload, [raw[i : i + 1] for i in range(len(raw))]) == whole
    assert whole[-1] == b"data: [DONE]"  # the finishing chunk ends it: no terminator comes
    chunks = [ChatCompletionChunk.model_validate_json(e[6:]) for e in whole[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant" and not chunks[0].choices[0].delta.content
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there"
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    starts = [tc for tc in calls if tc.id]
    assert [(tc.index, tc.function.name if tc.function else None) for tc in starts] == [
        (0, "f"),
        (1, "g"),
    ]
    assert starts[0].id == tool_id("r-1", 0, "f", '{"a":1}')  # as a whole answer's would be
    args = "".join(tc.function.arguments or "" for tc in calls if tc.function and tc.index == 0)
    assert orjson.loads(args) == {"a": 1}
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (25, 15)
    assert {c.id for c in chunks} == {"chatcmpl-r-1"} and {c.model for c in chunks} == {
        "gemini-2.0-flash"
    }


def test_a_stream_error_and_a_broken_chunk_keep_their_meaning() -> None:
    out = _translated(CHAT, [STREAM[0], b'data: {"candidates": [\r\n\r\n', _sse(OVERLOADED)])
    assert out[2] == b"data: {"  # unreadable: the relay's malformed rules apply to it
    err = orjson.loads(out[3][6:])["error"]
    assert err["message"] == OVERLOADED["error"]["message"] and err["code"] == "overloaded"
    no_usage = _translated(CHAT, STREAM)  # without include_usage: no usage chunk
    assert no_usage[-1] == b"data: [DONE]" and b'"usage"' not in no_usage[-2]
    blocked = _sse({"promptFeedback": {"blockReason": "OTHER"}, "responseId": "b"})
    filtered = _translated(CHAT, [blocked])
    assert b'"finish_reason":"content_filter"' in filtered[1] and filtered[-1] == b"data: [DONE]"


# -- the wire around the body: URL and headers --------------------------------------------------


def test_the_key_goes_in_a_header_and_the_url_keeps_its_query() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.config.load import load_data
    from gateway.config.model import Timeouts
    from gateway.edge.headers import upstream_headers
    from gateway.upstream.attempt import AttemptSpec

    config = load_data(
        {
            "providers": {
                "google": {
                    "base_url": "https://generativelanguage.googleapis.com/v1beta",
                    "api_key": "AIza-secret",
                    "format": "gemini",
                    "query": {"labels": "a"},
                }
            },
            "targets": {"flash@google": {"provider": "google", "model": "gemini-2.5-flash"}},
            "routes": [{"alias": "chat", "candidates": ["flash@google"]}],
        },
        env={},
    )
    provider = config.providers["google"]
    client = CIMultiDictProxy(
        CIMultiDict({"Authorization": "Bearer client", "x-goog-api-key": "c"})
    )
    headers = upstream_headers(client, provider, "req-1")
    assert headers["x-goog-api-key"] == "AIza-secret"
    assert "Authorization" not in headers and "authorization" not in {k.lower() for k in headers}
    tr = _gemini({**CHAT, "stream": True})
    spec = AttemptSpec(
        config.targets["flash@google"], provider, tr.path, b"{}", headers, True, Timeouts()
    )
    assert str(spec.url) == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
        ":streamGenerateContent?alt=sse&labels=a"
    )
    assert "AIza" not in str(spec.url)


def test_turnout_check_warns_of_a_key_in_the_url() -> None:
    from gateway.config.checks import config_warnings
    from gateway.config.load import load_data

    def warnings(query: dict[str, str]) -> list[str]:
        provider = {"base_url": "https://g.example/v1beta", "format": "gemini", "query": query}
        data = {
            "providers": {"g": {**provider, "api_key": "k"}},
            "targets": {"t": {"provider": "g", "model": "m"}},
            "routes": [{"alias": "chat", "candidates": ["t"]}],
        }
        return config_warnings(load_data(data, env={}))

    assert warnings({}) == []
    [said] = warnings({"key": "AIza"})
    assert said.startswith("providers.g.query.key puts the API key in every URL")


def test_geminis_error_statuses_are_kinds_of_the_model() -> None:
    from gateway.formats import gemini_response

    assert set(gemini_response._KINDS.values()) <= chat.ERROR_KINDS
