"""Properties of the OpenAI <-> Gemini translation, over a few hundred generated cases each
(seeded: a failure names its seed and replays):

- a request translated to Gemini and read back keeps everything the translation table says it
  keeps (system prompt, turns and their order, text, images, tool calls with ids, names and
  arguments, tool results under their call's id and name, tools, sampling, seed, JSON mode),
  and nothing is named dropped;
- an answer reads the same whole and streamed, whatever the chunks and however the bytes are
  split: text, tool calls (ids included), finish reason and usage.
"""

from __future__ import annotations

import itertools
import random
import string
from typing import Any

import orjson
import pytest

from gateway.formats.translate import translation

SEEDS = range(300)
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}


def _word(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + ' \n"\\é😀'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def _args(rng: random.Random) -> dict[str, Any]:
    return {
        f"k{i}": rng.choice([1, "x", [1, 2], {"n": None}, True]) for i in range(rng.randint(0, 3))
    }


def _conversation(rng: random.Random) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """OpenAI messages, and what each non-system turn says in order: (role, item)."""
    messages: list[dict[str, Any]] = []
    said: list[tuple[Any, ...]] = []
    for turn in range(rng.randint(1, 5)):
        texts = [_word(rng) for _ in range(rng.randint(1, 3))]
        content: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts]
        said += [("user", ("text", t)) for t in texts]
        if rng.random() < 0.3:
            data = "".join(rng.choice(string.ascii_letters) for _ in range(8))
            content.append(
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}
            )
            said.append(("user", ("image", "image/jpeg", data)))
        messages.append({"role": "user", "content": content})
        reply = _word(rng)
        calls = [
            (f"id-{turn}-{i}-{rng.randint(0, 9999)}", f"fn_{rng.randint(0, 3)}", _args(rng))
            for i in range(rng.randint(0, 2))
        ]
        messages.append(
            {
                "role": "assistant",
                "content": reply,
                "tool_calls": [
                    {
                        "id": i,
                        "type": "function",
                        "function": {"name": n, "arguments": orjson.dumps(a).decode()},
                    }
                    for i, n, a in calls
                ],
            }
        )
        said.append(("model", ("text", reply)))
        said += [("model", ("call", i, n, a)) for i, n, a in calls]
        for i, n, _ in calls:
            result = _word(rng)
            messages.append({"role": "tool", "tool_call_id": i, "content": result})
            said.append(("user", ("result", i, n, result)))
    return messages, said


def _read_back(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a Gemini request says, turn by turn, in the terms `_conversation` uses."""
    out: list[tuple[Any, ...]] = []
    for content in body["contents"]:
        for part in content["parts"]:
            if "text" in part:
                item: tuple[Any, ...] = ("text", part["text"])
            elif "inlineData" in part:
                item = ("image", part["inlineData"]["mimeType"], part["inlineData"]["data"])
            elif "functionCall" in part:
                fc = part["functionCall"]
                item = ("call", fc["id"], fc["name"], fc["args"])
            else:
                fr = part["functionResponse"]
                item = ("result", fr["id"], fr["name"], fr["response"]["output"])
            out.append((content["role"], item))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_a_request_read_back_from_gemini_says_what_the_client_said(seed: int) -> None:
    rng = random.Random(seed)
    messages, said = _conversation(rng)
    system = _word(rng)
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"fn_{i}",
                "description": _word(rng),
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
        for i in range(rng.randint(0, 3))
    ]
    sampling = {
        "temperature": round(rng.uniform(0, 2), 2),
        "top_p": round(rng.random(), 2),
        "max_tokens": rng.randint(1, 4096),
        "stop": [_word(rng) for _ in range(rng.randint(1, 4))],
        "seed": rng.randint(-(2**31), 2**31 - 1),
        "n": rng.randint(1, 4),
        "presence_penalty": round(rng.uniform(-2, 2), 2) or 0.5,
        "response_format": rng.choice([{"type": "json_object"}, {"type": "text"}]),
    }
    payload = {
        "model": "m",
        "messages": [{"role": "system", "content": system}, *messages],
        **({"tools": tools} if tools else {}),
        **sampling,
    }
    tr = translation(payload, "chat", "gemini", "gemini-x")
    assert tr is not None and tr.dropped == frozenset(), (seed, tr.dropped)
    body = orjson.loads(orjson.dumps(tr.body))  # what goes on the wire
    assert _read_back(body) == said, seed
    roles = [c["role"] for c in body["contents"]]
    assert all(a != b for a, b in itertools.pairwise(roles))  # turns alternate
    assert body["systemInstruction"] == {"parts": [{"text": system}]}
    declared = body["tools"][0]["functionDeclarations"] if tools else []
    assert [(d["name"], d["description"], d["parametersJsonSchema"]) for d in declared] == [
        (t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
        for t in tools
    ]
    config = body["generationConfig"]
    assert config["temperature"] == sampling["temperature"] and config["topP"] == sampling["top_p"]
    assert config["maxOutputTokens"] == sampling["max_tokens"]
    assert config["stopSequences"] == sampling["stop"] and config["seed"] == sampling["seed"]
    assert config.get("candidateCount", 1) == sampling["n"]
    assert config["presencePenalty"] == sampling["presence_penalty"]
    json_mode = sampling["response_format"]["type"] == "json_object"  # type: ignore[index]
    assert (config.get("responseMimeType") == "application/json") == json_mode


def _answer(rng: random.Random) -> tuple[list[dict[str, Any]], str, dict[str, int]]:
    parts: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.25:
            parts.append({"functionCall": {"name": f"fn_{rng.randint(0, 3)}", "args": _args(rng)}})
        else:
            parts.append({"text": _word(rng)})
    usage = {"promptTokenCount": rng.randint(0, 999), "candidatesTokenCount": rng.randint(0, 999)}
    return parts, rng.choice(list(_FINISH)), usage


def _response(
    parts: list[dict[str, Any]], finish: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "responseId": "r",
        "modelVersion": "g",
    }


def _assembled(events: list[bytes]) -> tuple[str, list[tuple[str, str, Any]], str | None, Any]:
    text, finish, usage = "", None, None
    calls: dict[int, list[Any]] = {}
    for event in events:
        if event == b"data: [DONE]":
            continue
        chunk = orjson.loads(event[6:])
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            finish = choice["finish_reason"] or finish
            for tc in delta.get("tool_calls") or ():
                call = calls.setdefault(tc["index"], ["", "", ""])
                call[0] = tc.get("id") or call[0]
                call[1] = tc["function"].get("name") or call[1]
                call[2] += tc["function"].get("arguments") or ""
    assembled = [(i, n, orjson.loads(a)) for i, n, a in (calls[k] for k in sorted(calls))]
    return text, assembled, finish, usage


@pytest.mark.parametrize("seed", SEEDS)
def test_an_answer_reads_the_same_whole_and_streamed(seed: int) -> None:
    rng = random.Random(seed)
    parts, finish, usage = _answer(rng)
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    whole_tr = translation(payload, "chat", "gemini", "g")
    assert whole_tr is not None
    out = whole_tr.reply(orjson.dumps(_response(parts, finish, usage)))
    assert out is not None
    message = orjson.loads(out)["choices"][0]
    whole_calls = [
        (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in message["message"].get("tool_calls", ())
    ]
    # the stream: the same parts in chunks of random sizes, the finish on the last
    chunks, at = [], 0
    while at < len(parts):
        step = rng.randint(1, 3)
        last = at + step >= len(parts)
        chunks.append(_response(parts[at : at + step], finish if last else None, usage))
        at += step
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(0, 20))))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    stream_tr = translation(
        {**payload, "stream": True, "stream_options": {"include_usage": True}},
        "chat",
        "gemini",
        "g",
    )
    assert stream_tr is not None
    splitter = stream_tr.splitter()
    events = [e for p in pieces for e in splitter.feed(p)]
    text, calls, stream_finish, stream_usage = _assembled(events)
    assert events[-1] == b"data: [DONE]", seed
    assert (
        text == (message["message"]["content"] or "") == "".join(p.get("text", "") for p in parts)
    )
    assert calls == whole_calls, seed
    assert [(n, a) for _, n, a in calls] == [
        (p["functionCall"]["name"], p["functionCall"]["args"]) for p in parts if "functionCall" in p
    ]
    expected = "tool_calls" if calls and finish == "STOP" else _FINISH[finish]
    assert stream_finish == message["finish_reason"] == expected
    assert stream_usage["prompt_tokens"] == usage["promptTokenCount"]
    assert stream_usage["completion_tokens"] == usage["candidatesTokenCount"]
