"""Property tests (seeded, no extra dependency): translate -> translate back keeps everything
docs/providers.md says is kept, for many generated conversations.

    a Messages request  -> OpenAI (the Anthropic ingress) -> Messages (the OpenAI ingress)
    an OpenAI answer    -> Messages answer                -> OpenAI answer
    an OpenAI stream    -> Messages events                -> OpenAI chunks
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
import pytest

from gateway.formats.translate import translation
from gateway.upstream.sse import SseSplitter

SEEDS = range(200)
WORDS = ["alpha", "beta", "gamma", "delta", "épsilon", "ζ", "line\nbreak", '"quoted"', "💡"]


def words(rng: random.Random, n: int = 4) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, n)))


def tool_id(rng: random.Random) -> str:
    return "toolu_" + "".join(rng.choice("abcXYZ019_-") for _ in range(12))


def messages_request(rng: random.Random) -> dict[str, Any]:
    """A Messages request within the translation table's kept subset."""
    tools = [
        {"name": f"tool_{i}", "description": words(rng), "input_schema": {"type": "object"}}
        for i in range(rng.randint(0, 2))
    ]
    turns: list[dict[str, Any]] = []
    pending: list[str] = []  # tool_use ids the next user turn answers
    for i in range(rng.randint(1, 3) * 2 - 1):
        if i % 2 == 0:  # the user: tool results first, then what it says
            content: list[dict[str, Any]] = [
                {
                    "type": "tool_result",
                    "tool_use_id": t,
                    "content": [{"type": "text", "text": words(rng)}],
                }
                for t in pending
            ]
            pending = []
            content.append({"type": "text", "text": words(rng)})
            if rng.random() < 0.3:
                source = (
                    {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
                    if rng.random() < 0.5
                    else {"type": "url", "url": "https://example.com/i.png"}
                )
                content.append({"type": "image", "source": source})
            turns.append({"role": "user", "content": content})
        else:
            content = [{"type": "text", "text": words(rng)}]
            for tool in tools[: rng.randint(0, len(tools))]:
                pending.append(tool_id(rng))
                args = {"q": words(rng), "n": rng.randint(0, 9)}
                content.append(
                    {"type": "tool_use", "id": pending[-1], "name": tool["name"], "input": args}
                )
            turns.append({"role": "assistant", "content": content})
    body: dict[str, Any] = {"model": "m", "max_tokens": rng.randint(1, 4096), "messages": turns}
    if rng.random() < 0.5:
        body["system"] = [{"type": "text", "text": words(rng)}]
    if tools:
        body["tools"] = tools
        choice: dict[str, Any] = rng.choice(
            [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": tools[0]["name"]}]
        )
        if rng.random() < 0.3:
            choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = choice
    for key, value in (
        ("temperature", round(rng.random(), 2)),
        ("top_p", round(rng.random(), 2)),
        ("stop_sequences", [words(rng, 1)]),
        ("stream", True),
        ("metadata", {"user_id": "u-" + str(rng.randint(0, 99))}),
    ):
        if rng.random() < 0.5:
            body[key] = value
    return body


@pytest.mark.parametrize("seed", SEEDS)
def test_a_messages_request_survives_the_trip_through_openai_and_back(seed: int) -> None:
    original = messages_request(random.Random(seed))
    there = translation(original, "chat", "openai", "gpt", "anthropic")
    assert there is not None
    assert there.dropped == frozenset(), there.dropped
    back = translation(there.body, "chat", "anthropic", "m")
    assert back is not None
    assert back.dropped == frozenset(), back.dropped
    assert back.body == original


def completion(rng: random.Random) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{i}{rng.randint(0, 999)}",
            "type": "function",
            "function": {"name": f"f{i}", "arguments": orjson.dumps({"x": words(rng)}).decode()},
        }
        for i in range(rng.randint(0, 2))
    ]
    message: dict[str, Any] = {"role": "assistant", "content": words(rng), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    prompt, cached = rng.randint(10, 999), rng.randint(0, 9)
    return {
        "id": f"chatcmpl-{seed_id(rng)}",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if calls else rng.choice(["stop", "length"]),
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": rng.randint(1, 99),
            "total_tokens": 0,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def seed_id(rng: random.Random) -> str:
    return "".join(rng.choice("abcdef0123456789") for _ in range(8))


def kept(answer: dict[str, Any]) -> dict[str, Any]:
    """What of a chat completion the table says survives."""
    choice = answer["choices"][0]
    usage = answer["usage"]
    return {
        "id": answer["id"],
        "model": answer["model"],
        "message": choice["message"],
        "finish_reason": choice["finish_reason"],
        "usage": (usage["prompt_tokens"], usage["completion_tokens"],
                  usage["prompt_tokens_details"]["cached_tokens"]),
    }  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
def test_an_openai_answer_survives_the_trip_through_messages_and_back(seed: int) -> None:
    answer = completion(random.Random(seed))
    there = translation({"model": "m", "messages": []}, "chat", "openai", "gpt", "anthropic")
    assert there is not None
    message = there.reply(orjson.dumps(answer))
    assert message is not None
    back = translation({"model": "m", "messages": []}, "chat", "anthropic", "m")
    assert back is not None
    again = back.reply(message)
    assert again is not None
    expected = kept(answer)
    for call in expected["message"].get("tool_calls", ()):  # Anthropic's input is an object:
        call["function"]["arguments"] = orjson.dumps(
            orjson.loads(call["function"]["arguments"])
        ).decode()
    assert kept(orjson.loads(again)) == expected


def chunks_of(answer: dict[str, Any], rng: random.Random) -> bytes:
    """An OpenAI stream for `answer`, its text and arguments in random pieces."""
    head = {"id": answer["id"], "object": "chat.completion.chunk", "created": 1, "model": "gpt"}
    out: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    text = answer["choices"][0]["message"]["content"]
    cuts = sorted(rng.sample(range(1, len(text)), min(3, len(text) - 1))) if len(text) > 1 else []
    out += [{"content": piece} for piece in split(text, cuts)]
    for i, call in enumerate(answer["choices"][0]["message"].get("tool_calls", ())):
        args = call["function"]["arguments"]
        first = {"index": i, "id": call["id"], "type": "function"}
        out.append(
            {
                "tool_calls": [
                    {**first, "function": {"name": call["function"]["name"], "arguments": ""}}
                ]
            }
        )
        out += [
            {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
            for piece in split(args, sorted(rng.sample(range(1, len(args)), 2)))
        ]
    events = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in out]
    finish = answer["choices"][0]["finish_reason"]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    events.append({**head, "choices": [], "usage": answer["usage"]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@pytest.mark.parametrize("seed", SEEDS)
def test_an_openai_stream_survives_the_trip_through_messages_events_and_back(seed: int) -> None:
    rng = random.Random(seed)
    answer = completion(rng)
    request = {"model": "m", "messages": [], "stream": True}
    there = translation(request, "chat", "openai", "gpt", "anthropic")
    back = translation(
        {**request, "stream_options": {"include_usage": True}}, "chat", "anthropic", "m"
    )
    assert there is not None and back is not None
    anthropic_events = there.splitter().feed(chunks_of(answer, rng))
    returned = back.splitter().feed(b"".join(e + b"\n\n" for e in anthropic_events))
    assert returned[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in returned[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == answer["choices"][0]["message"]["content"]
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for tc in (c["choices"][0]["delta"].get("tool_calls") or ()) if c["choices"] else ():
            got = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
            got["id"] = tc.get("id") or got["id"]
            got["name"] = tc["function"].get("name") or got["name"]
            got["arguments"] += tc["function"].get("arguments") or ""
    sent = answer["choices"][0]["message"].get("tool_calls", [])
    assert [calls[i] for i in sorted(calls)] == [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in sent
    ]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == answer["choices"][0]["finish_reason"]
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert usage["completion_tokens"] == answer["usage"]["completion_tokens"]
    assert SseSplitter().feed(b"".join(e + b"\n\n" for e in anthropic_events)) == anthropic_events
