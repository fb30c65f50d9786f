"""OpenAI's Chat Completions wire format, as the client's side of a translation: a request
decoded into the chat model, an answer and its stream encoded back.

Decoding is lenient (the gateway has already checked the body's shape): what has no place in
the model is named in `ChatRequest.dropped`, never an error. A field left at its neutral value
(`n: 1`, `logprobs: false`, a zero penalty...) is not a loss.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.formats import chat

# Request fields the model carries (the rest are dropped, unless neutral).
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
    }
)
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "store": (None, False),
    "metadata": (None, {}),
}


def _text_of(content: Any) -> list[chat.Text | chat.Image]:
    """A message's content (a string or a list of parts) as text and image parts."""
    if isinstance(content, str):
        return [chat.Text(content)] if content else []
    out: list[chat.Text | chat.Image] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("text", "refusal"):
                text = part.get(kind)
                if isinstance(text, str) and text:
                    out.append(chat.Text(text))
            elif kind == "image_url":
                spec = part.get("image_url")
                url = spec.get("url") if isinstance(spec, dict) else spec
                if isinstance(url, str):
                    out.append(image(url))
    return out


def image(url: str) -> chat.Image:
    """An image URL (a `data:` URL: base64 data) as an image part."""
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return chat.Image(data=data, media_type=head or "image/png")
    return chat.Image(url=url)


def _unhandled_parts(content: Any) -> set[str]:
    if not isinstance(content, list):
        return set()
    kinds = {str(p.get("type")) for p in content if isinstance(p, dict)}
    return {f"content.{k}" for k in kinds if k not in ("text", "refusal", "image_url")}


def _messages(
    raw: Any, dropped: set[str]
) -> tuple[tuple[chat.Message, ...], tuple[chat.Text, ...]]:
    messages: list[chat.Message] = []
    system: list[chat.Text] = []
    for m in raw if isinstance(raw, list) else []:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        role = role if isinstance(role, str) else type(role).__name__
        content = m.get("content")
        dropped |= _unhandled_parts(content)
        if m.get("name"):
            dropped.add("messages.name")
        if role in ("system", "developer"):
            if messages:
                dropped.add("system_position")  # the other format has one system prompt, first
            system.extend(p for p in _text_of(content) if isinstance(p, chat.Text))
        elif role == "user":
            messages.append(chat.Message("user", tuple(_text_of(content))))
        elif role == "assistant":
            parts: list[chat.Part] = [*_text_of(content), *tool_uses(m.get("tool_calls"))]
            if m.get("function_call"):
                dropped.add("function_call")
            messages.append(chat.Message("assistant", tuple(parts)))
        elif role == "tool":
            result = chat.ToolResult(str(m.get("tool_call_id") or ""), tuple(_text_of(content)))
            messages.append(chat.Message("user", (result,)))
        else:
            dropped.add(f"messages.role.{role}")
    return tuple(messages), tuple(system)


def function_tool(fn: dict[str, Any]) -> chat.Tool:
    """OpenAI's function definition (`name`, `description`, `parameters`, `strict`: Chat
    Completions nests it under `function`, the Responses API does not) as a tool."""
    schema = fn.get("parameters")
    return chat.Tool(
        str(fn["name"]),
        str(fn.get("description") or ""),
        schema if isinstance(schema, dict) else {"type": "object"},
        fn.get("strict") is True,
    )


def _tools(raw: Any, dropped: set[str]) -> tuple[chat.Tool, ...]:
    out: list[chat.Tool] = []
    for t in raw if isinstance(raw, list) else []:
        fn = t.get("function") if isinstance(t, dict) and t.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            dropped.add("tools")
            continue
        out.append(function_tool(fn))
    return tuple(out)


def _tool_choice(raw: Any, parallel: Any) -> chat.ToolChoice | None:
    may_parallel = parallel is not False
    if isinstance(raw, str) and raw in ("auto", "none", "required"):
        return chat.ToolChoice(raw, parallel=may_parallel)  # type: ignore[arg-type]
    if isinstance(raw, dict):
        fn = raw.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return chat.ToolChoice("tool", fn["name"], parallel=may_parallel)
    return None if may_parallel else chat.ToolChoice("auto", parallel=False)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _penalty(payload: dict[str, Any], key: str, dropped: set[str]) -> float | None:
    """A penalty the client set (None for none, or the neutral 0)."""
    raw = payload.get(key)
    value = chat.number(raw)
    if value is None and raw is not None:
        dropped.add(key)
    return value or None


def _response_format(raw: Any, dropped: set[str]) -> chat.ResponseFormat | None:
    kind = raw.get("type") if isinstance(raw, dict) else raw
    if kind is None or kind == "text":
        return None
    if kind == "json_object":
        return chat.ResponseFormat()
    spec = raw.get("json_schema") if isinstance(raw, dict) else None
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return chat.ResponseFormat(
            spec["schema"], str(spec.get("name") or ""), spec.get("strict") is True
        )
    dropped.add("response_format")
    return None


def signature_of(call: dict[str, Any]) -> str:
    """Gemini's thought signature of an OpenAI-shaped tool call, where Google's
    OpenAI-compatible endpoint puts it: `extra_content.google.thought_signature`."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) else ""


def tool_uses(calls: Any) -> list[chat.ToolUse]:
    """OpenAI's `tool_calls` (`[{id, function: {name, arguments}}]`) as tool uses; arguments
    that are not a string read as `{}`, entries that are not calls are skipped. A Gemini
    thought signature (`signature_of`) stays with its call."""
    out: list[chat.ToolUse] = []
    for call in calls if isinstance(calls, list) else ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            args = fn.get("arguments")
            name = str(fn.get("name") or "")
            call_id = str(call.get("id") or "")
            arguments = args if isinstance(args, str) else "{}"
            out.append(chat.ToolUse(call_id, name, arguments, signature_of(call)))
    return out


def decode_request(payload: dict[str, Any]) -> chat.ChatRequest:
    dropped: set[str] = set()
    messages, system = _messages(payload.get("messages"), dropped)
    tools = _tools(payload.get("tools"), dropped)
    for key, value in payload.items():
        if key not in _HANDLED and not any(value == v for v in _NEUTRAL.get(key, (None,))):
            dropped.add(key)
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    stop = payload.get("stop")
    stops: tuple[str, ...] = (stop,) if isinstance(stop, str) else ()
    if isinstance(stop, list):
        stops = tuple(s for s in stop if isinstance(s, str))
    options = payload.get("stream_options")
    seed, n = _integer(payload.get("seed")), _integer(payload.get("n"))
    if seed is None and payload.get("seed") is not None:
        dropped.add("seed")
    if (n is None or n < 1) and payload.get("n") is not None:
        dropped.add("n")
    presence = _penalty(payload, "presence_penalty", dropped)
    frequency = _penalty(payload, "frequency_penalty", dropped)
    response_format = _response_format(payload.get("response_format"), dropped)
    return chat.ChatRequest(
        model=str(payload.get("model") or ""),
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=_tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls")),
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
        temperature=chat.number(payload.get("temperature")),
        top_p=chat.number(payload.get("top_p")),
        stop=stops,
        seed=seed,
        n=n if n is not None and n > 1 else 1,
        presence_penalty=presence,
        frequency_penalty=frequency,
        response_format=response_format,
        stream=payload.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        user=payload["user"] if isinstance(payload.get("user"), str) else "",
        dropped=frozenset(dropped),
    )


# -- answers ---------------------------------------------------------------------------------


def usage(u: chat.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def call(use: chat.ToolUse) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": use.id,
        "type": "function",
        "function": {"name": use.name, "arguments": use.arguments},
    }
    if use.signature:  # Gemini's: back to the client where Google's own endpoint puts it
        out["extra_content"] = {"google": {"thought_signature": use.signature}}
    return out


def _choice(index: int, parts: tuple[chat.Part, ...], finish: str | None) -> dict[str, Any]:
    text = "".join(p.text for p in parts if isinstance(p, chat.Text))
    calls = [call(p) for p in parts if isinstance(p, chat.ToolUse)]
    thinking = "".join(p.text for p in parts if isinstance(p, chat.Thinking))
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:  # where DeepSeek and vLLM put it; OpenAI's own clients ignore it
        message["reasoning_content"] = thinking
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def encode_reply(reply: chat.ChatReply, model: str = "") -> dict[str, Any]:
    """The answer as a chat completion; `model`: the one asked for, if the answer names none."""
    others = [_choice(i, c.parts, c.finish) for i, c in enumerate(reply.others, 1)]
    out: dict[str, Any] = {
        "id": chat.own_id(reply.id, "chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or model,
        "choices": [_choice(0, reply.parts, reply.finish), *others],
    }
    if reply.usage is not None:
        out["usage"] = usage(reply.usage)
    return out


_CODES = {"rate_limit_error": "rate_limit_exceeded", "overloaded_error": "overloaded"}


def error_body(
    status: int, kind: str, message: str, *, context: bool = False, param: str = "messages"
) -> bytes:
    """An error in OpenAI's shape, from a kind of error in the model's terms
    (`chat.ERROR_KINDS`); `context`: it says the prompt (`param`) is too long for the model."""
    code = "context_length_exceeded" if context else _CODES.get(kind)
    etype = "server_error" if status >= 500 else "invalid_request_error"
    if kind in ("authentication_error", "permission_error", "rate_limit_error", "not_found_error"):
        etype = kind
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": etype,
                "code": code,
                "param": param if context else None,
            }
        }
    )
