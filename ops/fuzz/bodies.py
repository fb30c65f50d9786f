"""Request bodies: valid ones, and mutated ones that say how they were broken."""

from __future__ import annotations

import random
from collections.abc import Callable

from .jsontext import Pairs, Raw, bad_string, dump, junk_value, nested, odd_literal

WORDS = ("hello", "write python code", "summarise this", "2+2?", "translate: bonjour", "hi")

# Every field of a chat request the gateway or a provider may read.
CHAT_FIELDS = (
    "model", "messages", "stream", "temperature", "top_p", "n", "max_tokens",
    "max_completion_tokens", "stop", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "user", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "seed", "metadata", "stream_options", "service_tier", "store",
)  # fmt: skip
MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id")
DEPTHS = (10, 100, 253, 254, 255, 256, 500, 1000, 1023, 1024, 1025, 1100)
HUGE = (10_000, 100_000, 1_000_000, 4_000_000)


def chat_body(rng: random.Random, model: str, *, stream: bool) -> dict[str, object]:
    messages: list[object] = [{"role": "user", "content": rng.choice(WORDS)}]
    if rng.random() < 0.1:
        messages.insert(0, {"role": "system", "content": "be brief"})
    body: dict[str, object] = {"model": model, "messages": messages}
    if stream:
        body["stream"] = True
    if rng.random() < 0.3:
        body["max_tokens"] = rng.randint(1, 64)
    if rng.random() < 0.3:
        body["temperature"] = round(rng.random(), 2)
    if rng.random() < 0.2:
        body["metadata"] = {"task": rng.choice(("chat", "code", "math"))}
    if stream and rng.random() < 0.3:
        body["stream_options"] = {"include_usage": True}
    return body


# Every field of a Messages API request (`POST /v1/messages`, the Anthropic ingress).
MESSAGES_API_FIELDS = (
    "model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "top_k",
    "stop_sequences", "metadata", "tools", "tool_choice", "thinking", "service_tier",
)  # fmt: skip


def messages_body(rng: random.Random, model: str, *, stream: bool) -> dict[str, object]:
    """A valid Messages API request, now and then with a tool round trip or an image."""
    content: object = rng.choice(WORDS)
    if rng.random() < 0.3:
        image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
        content = [{"type": "text", "text": rng.choice(WORDS)}, {"type": "image", "source": image}]
    messages: list[object] = [{"role": "user", "content": content}]
    body: dict[str, object] = {"model": model, "max_tokens": rng.randint(1, 64)}
    if rng.random() < 0.3:
        tool = {"name": "search", "input_schema": {"type": "object"}}
        use = {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "x"}}
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"}
        messages += [
            {"role": "assistant", "content": [use]},
            {"role": "user", "content": [result]},
        ]
        body["tools"] = [tool]
    body["messages"] = messages
    if stream:
        body["stream"] = True
    if rng.random() < 0.3:
        body["system"] = rng.choice(("be brief", [{"type": "text", "text": "be brief"}]))
    if rng.random() < 0.2:
        body["stop_sequences"] = [rng.choice(WORDS)]
    return body


# Every field of a Responses API request (`POST /v1/responses`, stateless).
RESPONSES_API_FIELDS = (
    "model", "input", "instructions", "max_output_tokens", "stream", "temperature", "top_p",
    "tools", "tool_choice", "parallel_tool_calls", "text", "store", "metadata", "reasoning",
    "previous_response_id", "include", "truncation", "background",
)  # fmt: skip


def responses_body(rng: random.Random, model: str, *, stream: bool) -> dict[str, object]:
    """A valid Responses API request: a string or items, now and then a function call round
    trip or an image."""
    text = rng.choice(WORDS)
    body: dict[str, object] = {"model": model, "input": text}
    if rng.random() < 0.5:
        content: list[object] = [{"type": "input_text", "text": text}]
        if rng.random() < 0.3:
            content.append({"type": "input_image", "image_url": "data:image/png;base64,iVBORw0K"})
        items: list[object] = [{"role": "user", "content": content}]
        if rng.random() < 0.4:
            items += [
                {"type": "function_call", "call_id": "call_1", "name": "search", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "found"},
            ]
            body["tools"] = [{"type": "function", "name": "search", "parameters": {}}]
        body["input"] = items
    if stream:
        body["stream"] = True
    if rng.random() < 0.3:
        body["instructions"] = "be brief"
    if rng.random() < 0.3:
        body["max_output_tokens"] = rng.randint(16, 64)
    return body


def embed_body(rng: random.Random, model: str) -> dict[str, object]:
    inp: object = rng.choice(WORDS)
    if rng.random() < 0.3:
        inp = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
    return {"model": model, "input": inp}


def completion_body(rng: random.Random, model: str) -> dict[str, object]:
    return {"model": model, "prompt": rng.choice(WORDS), "max_tokens": rng.randint(1, 32)}


Mutation = Callable[[random.Random, dict[str, object]], tuple[object, str]]


def wrong_type(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    name = rng.choice(CHAT_FIELDS)
    old = body.get(name)
    body[name] = junk_value(rng, avoid=type(old) if old is not None else None)
    return body, f"wrong-type:{name}"


def message_junk(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    what = rng.choice(("field", "item", "list", "parts"))
    if what == "item":
        body["messages"] = [junk_value(rng)]
    elif what == "list":
        body["messages"] = [{"role": "user", "content": "x"}] * rng.choice((0, 1000, 5000))
    elif what == "parts":
        part = {"type": junk_value(rng), "text": junk_value(rng), "image_url": junk_value(rng)}
        body["messages"] = [{"role": "user", "content": [part]}]
    else:
        name = rng.choice(MESSAGE_FIELDS)
        body["messages"] = [{"role": "user", "content": "x", name: junk_value(rng)}]
    return body, f"messages:{what}"


def unknown_fields(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    keys = ("", "__proto__", "constructor", "x" * 10_000, "\u0000", "model ", "MODEL", "é", "a.b")
    for _ in range(rng.randint(1, 20)):
        body[rng.choice(keys) + str(rng.randint(0, 99))] = junk_value(rng)
    return body, "unknown-fields"


def huge_string(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    n = rng.choice(HUGE)
    where = rng.choice(("content", "model", "user", "unknown", "stop"))
    text = rng.choice("ab\u00e9\U0001f600") * n
    if where == "content":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body[where if where != "unknown" else "zzz"] = text
    return body, f"huge-string:{where}:{n}"


def deep(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    depth = rng.choice(DEPTHS)
    where = rng.choice(("content", "metadata", "tools", "unknown", "messages", "top"))
    value = nested(depth, rng)
    if where == "top":
        return value, f"deep:top:{depth}"
    if where == "content":
        body["messages"] = [{"role": "user", "content": value}]
    elif where == "messages":
        body["messages"] = value
    else:
        body[where if where != "unknown" else "extra"] = value
    return body, f"deep:{where}:{depth}"


def bad_utf8(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    where = rng.choice(("content", "model", "key", "role"))
    if where == "key":
        return Raw(dump(body)[:-1] + b"," + bad_string(rng).data + b":1}"), "utf8:key"
    if where in ("content", "role"):
        msg = {"role": "user", "content": "x"}
        body["messages"] = [{**msg, where: bad_string(rng)}]
    else:
        body["model"] = bad_string(rng)
    return body, f"utf8:{where}"


def top_level(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    value = rng.choice(([], [body], "demo", 123, None, True, 1.5))
    return value, f"top-level:{type(value).__name__}"


def non_finite(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    name = rng.choice(("temperature", "top_p", "max_tokens", "n", "seed", "presence_penalty"))
    body[name] = (
        rng.choice((float("nan"), float("inf"), float("-inf")))
        if rng.random() < 0.5
        else odd_literal(rng)
    )
    return body, f"non-finite:{name}"


def duplicate_keys(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    name = rng.choice(("model", "messages", "stream", "metadata"))
    items = list(body.items())
    items.insert(rng.randint(0, len(items)), (name, junk_value(rng)))
    return Pairs(tuple(items)), f"duplicate-key:{name}"


def broken_text(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    text = dump(body)
    how = rng.choice(
        ("truncate", "trailing", "two-docs", "bom", "comment", "quotes", "empty", "ws")
    )
    out = {
        "truncate": text[: rng.randint(0, max(0, len(text) - 1))],
        "trailing": text + b"garbage",
        "two-docs": text + text,
        "bom": b"\xef\xbb\xbf" + text,
        "comment": b"/* c */" + text,
        "quotes": text.replace(b'"', b"'"),
        "empty": b"",
        "ws": b" \n\t ",
    }[how]
    return Raw(out), f"text:{how}"


def routing_junk(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    meta: object = {
        rng.choice(("task", "max_cost", "quality_floor", "role", "x")): junk_value(rng)
        for _ in range(rng.randint(1, 5))
    }
    if rng.random() < 0.2:
        meta = {f"k{i}": "v" for i in range(rng.choice((17, 100, 1000)))}
    body["metadata"] = meta
    if rng.random() < 0.5:
        body["model"] = rng.choice(
            ("", " demo", "demo\u0000", "DEMO", "nope", "m" * 10_000, "smart#1")
        )
    return body, "routing-metadata"


MUTATIONS: tuple[Mutation, ...] = (
    wrong_type, wrong_type, wrong_type, message_junk, unknown_fields, huge_string, deep, deep,
    bad_utf8, top_level, non_finite, duplicate_keys, broken_text, broken_text, routing_junk,
)  # fmt: skip


def messages_api_junk(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    """A Messages API structure broken: a block, a tool, the system prompt, a field's type."""
    what = rng.choice(("block", "block", "tool", "system", "field"))
    if what == "block":
        kind = rng.choice(("text", "image", "tool_use", "tool_result", "thinking", "document"))
        block = {
            "type": kind,
            rng.choice(("text", "source", "input", "content", "id")): junk_value(rng),
        }
        role = rng.choice(("user", "assistant"))
        body["messages"] = [{"role": role, "content": [block, junk_value(rng)]}]
        return body, f"anthropic:block:{kind}"
    if what == "tool":
        body["tools"] = [
            {"name": junk_value(rng), "input_schema": junk_value(rng)},
            junk_value(rng),
        ]
        body["tool_choice"] = rng.choice(({"type": junk_value(rng)}, junk_value(rng)))
    elif what == "system":
        body["system"] = [{"type": "text", "text": junk_value(rng)}, junk_value(rng)]
    else:
        name = rng.choice(MESSAGES_API_FIELDS)
        body[name] = junk_value(rng, avoid=type(body.get(name)) if name in body else None)
        return body, f"anthropic:wrong-type:{name}"
    return body, f"anthropic:{what}"


MESSAGES_API_MUTATIONS: tuple[Mutation, ...] = (*MUTATIONS, messages_api_junk, messages_api_junk)


def responses_api_junk(rng: random.Random, body: dict[str, object]) -> tuple[object, str]:
    """A Responses API structure broken: an input item, a part, a tool, a field's type."""
    what = rng.choice(("item", "part", "tool", "field"))
    if what == "item":
        kind = rng.choice(
            ("message", "function_call", "function_call_output", "reasoning", "item_reference")
        )
        item = {"type": kind, rng.choice(("content", "call_id", "output", "id")): junk_value(rng)}
        body["input"] = [item, junk_value(rng)]
        return body, f"responses:item:{kind}"
    if what == "part":
        kind = rng.choice(("input_text", "input_image", "input_file", "output_text"))
        part = {"type": kind, rng.choice(("text", "image_url", "file_id")): junk_value(rng)}
        body["input"] = [{"role": rng.choice(("user", "assistant")), "content": [part]}]
        return body, f"responses:part:{kind}"
    if what == "tool":
        body["tools"] = [{"type": junk_value(rng), "name": junk_value(rng)}, junk_value(rng)]
        body["tool_choice"] = rng.choice(({"type": "function"}, junk_value(rng)))
        return body, "responses:tool"
    name = rng.choice(RESPONSES_API_FIELDS)
    body[name] = junk_value(rng, avoid=type(body.get(name)) if name in body else None)
    return body, f"responses:wrong-type:{name}"


RESPONSES_API_MUTATIONS: tuple[Mutation, ...] = (*MUTATIONS, responses_api_junk, responses_api_junk)


def mutate(
    rng: random.Random, body: dict[str, object], mutations: tuple[Mutation, ...] = MUTATIONS
) -> tuple[bytes, str]:
    """Apply one to three mutations (the first that leaves a non-object ends the chain)."""
    value: object = body
    names: list[str] = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not isinstance(value, dict):
            break
        value, name = rng.choice(mutations)(rng, value)
        names.append(name)
    return (value.data if isinstance(value, Raw) else dump(value)), "+".join(names)
