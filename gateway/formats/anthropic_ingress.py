"""Anthropic's Messages API as the *client's* side of a translation (`POST /v1/messages` on the
gateway, served by a target of another format): a request decoded into the chat model, an
answer, its stream and its errors encoded back.

Shapes follow the `anthropic` SDK's types (`MessageCreateParams`, `Message`,
`RawMessageStreamEvent`, `ErrorResponse`). Decoding is lenient, as for OpenAI's: what has no
place in the model is named in `ChatRequest.dropped`, never an error.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.formats import chat

# Request fields the model carries (the rest are dropped, unless neutral).
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
    }
)
_NEUTRAL: dict[str, tuple[Any, ...]] = {"thinking": (None, {"type": "disabled"})}
STOP_REASON: dict[str | None, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def error_type(status: int) -> str:
    """The Anthropic error `type` for an HTTP status (their documented table)."""
    if status in (503, 529):
        return "overloaded_error"
    if status >= 500:
        return "api_error"
    return {
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error")


def error_body(status: int, message: str) -> bytes:
    """An error in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`."""
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type(status), "message": message}}
    )


# -- requests ---------------------------------------------------------------------------------


def _cached(block: dict[str, Any], dropped: set[str]) -> None:
    if block.get("cache_control"):
        dropped.add("cache_control")  # no prompt cache breakpoints in the other format


def _image(source: Any) -> chat.Image | None:
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return chat.Image(data=source["data"], media_type=str(source.get("media_type") or ""))
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return chat.Image(url=source["url"])
    return None


def _leaves(content: Any, dropped: set[str]) -> tuple[chat.Text | chat.Image, ...]:
    """A tool result's content: a string or text and image blocks."""
    if isinstance(content, str):
        return (chat.Text(content),) if content else ()
    out: list[chat.Text | chat.Image] = []
    for block in content if isinstance(content, list) else ():
        part = _part(block, dropped)
        if isinstance(part, chat.Text | chat.Image):
            out.append(part)
        elif part is not None:
            dropped.add("tool_result.content")
    return tuple(out)


def _part(block: Any, dropped: set[str]) -> chat.Part | None:
    if not isinstance(block, dict):
        return None
    _cached(block, dropped)
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        if block.get("citations"):
            dropped.add("citations")
        return chat.Text(block["text"])
    if kind == "image":
        image = _image(block.get("source"))
        if image is not None:
            return image
    elif kind == "tool_use":
        args = orjson.dumps(block.get("input") or {}).decode()
        return chat.ToolUse(str(block.get("id") or ""), str(block.get("name") or ""), args)
    elif kind == "tool_result":
        content = _leaves(block.get("content"), dropped)
        tid = str(block.get("tool_use_id") or "")
        return chat.ToolResult(tid, content, block.get("is_error") is True)
    elif kind == "thinking" and isinstance(block.get("thinking"), str):
        return chat.Thinking(block["thinking"], str(block.get("signature") or ""), "anthropic")
    dropped.add(f"content.{kind}")  # documents, redacted thinking, server tool blocks, ...
    return None


def _content(content: Any, dropped: set[str]) -> tuple[chat.Part, ...]:
    if isinstance(content, str):
        return (chat.Text(content),) if content else ()
    if not isinstance(content, list):
        return ()
    return tuple(p for p in (_part(b, dropped) for b in content) if p is not None)


def _messages(raw: Any, dropped: set[str]) -> tuple[chat.Message, ...]:
    out: list[chat.Message] = []
    for m in raw if isinstance(raw, list) else []:
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role not in ("user", "assistant"):
            dropped.add(f"messages.role.{role if isinstance(role, str) else type(role).__name__}")
            continue
        out.append(chat.Message(role, _content(m.get("content"), dropped)))
    return tuple(out)


def _system(raw: Any, dropped: set[str]) -> tuple[chat.Text, ...]:
    if isinstance(raw, str):
        return (chat.Text(raw),) if raw else ()
    parts = _content(raw, dropped) if isinstance(raw, list) else ()
    return tuple(p for p in parts if isinstance(p, chat.Text))


def _tools(raw: Any, dropped: set[str]) -> tuple[chat.Tool, ...]:
    out: list[chat.Tool] = []
    for t in raw if isinstance(raw, list) else []:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            dropped.add("tools")
            continue
        kind = t.get("type")
        schema = t.get("input_schema")
        if kind not in (None, "custom") or not isinstance(schema, dict):
            dropped.add(f"tools.{kind}" if isinstance(kind, str) else "tools")  # server tools
            continue
        _cached(t, dropped)
        out.append(chat.Tool(t["name"], str(t.get("description") or ""), schema))
    return tuple(out)


def _tool_choice(raw: Any) -> chat.ToolChoice | None:
    if not isinstance(raw, dict):
        return None
    parallel = raw.get("disable_parallel_tool_use") is not True
    kind = raw.get("type")
    if kind == "tool" and isinstance(raw.get("name"), str):
        return chat.ToolChoice("tool", raw["name"], parallel=parallel)
    mode = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    return None if mode is None else chat.ToolChoice(mode, parallel=parallel)  # type: ignore[arg-type]


def decode_request(payload: dict[str, Any]) -> chat.ChatRequest:
    dropped: set[str] = set()
    messages = _messages(payload.get("messages"), dropped)
    system = _system(payload.get("system"), dropped)
    tools = _tools(payload.get("tools"), dropped)
    for key, value in payload.items():
        if key not in _HANDLED and not any(value == v for v in _NEUTRAL.get(key, (None,))):
            dropped.add(key)
    meta = payload.get("metadata")
    user = meta.get("user_id") if isinstance(meta, dict) else None
    if isinstance(meta, dict) and set(meta) - {"user_id"}:
        dropped.add("metadata")
    stop = payload.get("stop_sequences")
    max_tokens = payload.get("max_tokens")
    return chat.ChatRequest(
        model=str(payload.get("model") or ""),
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=_tool_choice(payload.get("tool_choice")),
        max_tokens=max_tokens
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
        else None,
        temperature=chat.number(payload.get("temperature")),
        top_p=chat.number(payload.get("top_p")),
        stop=tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else (),
        stream=payload.get("stream") is True,
        include_usage=True,  # an Anthropic stream always tells its usage
        user=user if isinstance(user, str) else "",
        dropped=frozenset(dropped),
    )


# -- answers ----------------------------------------------------------------------------------


def usage(u: chat.Usage | None) -> dict[str, int]:
    u = u or chat.Usage()
    return {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens),  # Anthropic's excludes cache
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_tokens,
    }


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's `arguments` JSON text as Anthropic's `input` object ({} when it is not one)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def encode_reply(reply: chat.ChatReply, model: str = "") -> dict[str, Any]:
    """The answer as a Messages API message; `model`: the one asked for, if it names none."""
    content: list[dict[str, Any]] = []
    for p in reply.parts:
        if isinstance(p, chat.Text) and p.text:
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, chat.ToolUse):
            block = {
                "type": "tool_use",
                "id": p.id,
                "name": p.name,
                "input": tool_input(p.arguments),
            }
            content.append(block)
    return {
        "id": chat.own_id(reply.id, "msg_"),
        "type": "message",
        "role": "assistant",
        "model": reply.model or model,
        "content": content,
        "stop_reason": STOP_REASON.get(reply.finish, "end_turn"),
        "stop_sequence": None,
        "usage": usage(reply.usage),
    }
