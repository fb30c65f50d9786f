"""Anthropic's Messages API, as the provider's side of a translation: a chat-model request
encoded for `POST /v1/messages`, its answer, its stream events and its errors decoded.

Shapes follow the `anthropic` SDK's types (`anthropic.types`: `MessageCreateParams`,
`Message`, `RawMessageStreamEvent`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.formats import chat

PATH = "/messages"
VERSION = "2023-06-01"  # the `anthropic-version` header
DEFAULT_MAX_TOKENS = 4096  # required by Anthropic; OpenAI's default is "as many as fit"
_TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")

_FINISH: dict[str, chat.Finish] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


_CARRIED: frozenset[str] = frozenset()  # of what `chat.uncarried` checks: none


def _tool_id(raw: str) -> str:
    """Anthropic takes `[a-zA-Z0-9_-]+` ids: another vendor's id, mapped the same way every
    time (a conversation's call and its result still match)."""
    return _TOOL_ID.sub("_", raw) or "call"


def _block(part: chat.Part, dropped: set[str]) -> dict[str, Any] | None:
    if isinstance(part, chat.Text):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, chat.Image):
        if part.data:
            source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        else:
            source = {"type": "url", "url": part.url}
        return {"type": "image", "source": source}
    if isinstance(part, chat.ToolUse):
        try:
            args = orjson.loads(part.arguments or "{}")
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            dropped.add("tool_calls.arguments")  # not a JSON object: Anthropic takes no other
            args = {}
        return {"type": "tool_use", "id": _tool_id(part.id), "name": part.name, "input": args}
    if isinstance(part, chat.ToolResult):
        content = [b for b in (_block(p, dropped) for p in part.content) if b is not None]
        out: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(part.tool_use_id)}
        if content:
            out["content"] = content
        if part.is_error:
            out["is_error"] = True
        return out
    if part.vendor == "anthropic" and part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    dropped.add("thinking")  # another vendor's reasoning: never sent with a foreign signature
    return None


def _messages(req: chat.ChatRequest, dropped: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in req.messages:
        blocks = [b for b in (_block(p, dropped) for p in m.parts) if b is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == m.role:  # one turn per role in a row (tool results
            out[-1]["content"].extend(blocks)  # and the user's next words, say)
        else:
            out.append({"role": m.role, "content": blocks})
    return out


def encode_request(req: chat.ChatRequest, model: str) -> tuple[dict[str, Any], frozenset[str]]:
    """The body for `POST /v1/messages`, and what of the request it could not carry."""
    dropped = set(req.dropped) | chat.uncarried(req, _CARRIED)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _messages(req, dropped),
    }
    if req.system:
        body["system"] = [{"type": "text", "text": t.text} for t in req.system if t.text]
    if req.temperature is not None:
        if req.temperature > 1.0:
            dropped.add("temperature")  # Anthropic's range is 0..1: clamped
        body["temperature"] = min(1.0, max(0.0, req.temperature))
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.stream:
        body["stream"] = True
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.schema}
            for t in req.tools
        ]
        if any(t.strict for t in req.tools):  # Anthropic's needs a beta: not asked for
            dropped.add("tools.strict")
    choice = req.tool_choice
    if choice is not None and (req.tools or choice.mode == "none"):
        mode = {"required": "any"}.get(choice.mode, choice.mode)
        tc: dict[str, Any] = {"type": mode}
        if mode == "tool":
            tc["name"] = choice.name
        if not choice.parallel and mode != "none":
            tc["disable_parallel_tool_use"] = True
        body["tool_choice"] = tc
    return body, frozenset(dropped)


def _usage(raw: Any) -> chat.Usage | None:
    if not isinstance(raw, dict):
        return None

    def n(key: str) -> int:
        v = raw.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    cached = n("cache_read_input_tokens")
    return chat.Usage(
        n("input_tokens") + cached + n("cache_creation_input_tokens"), n("output_tokens"), cached
    )


def _part(block: Any, dropped: set[str]) -> chat.Part | None:
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return chat.Text(block["text"])
    if kind == "tool_use":
        args = orjson.dumps(block.get("input") or {}).decode()
        return chat.ToolUse(str(block.get("id") or ""), str(block.get("name") or ""), args)
    if kind == "thinking" and isinstance(block.get("thinking"), str):
        return chat.Thinking(block["thinking"], str(block.get("signature") or ""), "anthropic")
    dropped.add(f"content.{kind}")
    return None


def decode_reply(obj: Any) -> chat.ChatReply | None:
    """An answer (`type: message`); None for anything else."""
    if not isinstance(obj, dict) or obj.get("type") != "message":
        return None
    dropped: set[str] = set()
    blocks = obj.get("content")
    parts = tuple(p for p in (_part(b, dropped) for b in blocks or ()) if p is not None)
    stop = obj.get("stop_reason")
    return chat.ChatReply(
        str(obj.get("id") or ""),
        str(obj.get("model") or ""),
        parts,
        _FINISH.get(stop, "stop") if isinstance(stop, str) else None,
        _usage(obj.get("usage")),
        frozenset(dropped),
    )


def error_of(body: bytes) -> tuple[str, str]:
    """(kind, message) of an Anthropic error body; ("", "") when it is not one."""
    return chat.error_fields(body)


class StreamDecoder:
    """Anthropic stream events (their `data` JSON) as stream events in the model's terms."""

    def __init__(self) -> None:
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def decode(self, data: bytes) -> list[chat.Event]:
        obj = chat.json_object(data)
        if obj is None:
            return [chat.Unreadable()]
        kind = obj.get("type")
        index = obj.get("index")
        index = index if isinstance(index, int) else -1
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if not isinstance(delta, dict):
                return [chat.Unreadable()]
            if delta.get("type") == "text_delta":
                return [chat.TextDelta(str(delta.get("text") or ""))]
            if delta.get("type") == "input_json_delta":
                tool = self._tools.get(index)
                json = str(delta.get("partial_json") or "")
                return [chat.ToolArguments(tool, json)] if tool is not None and json else []
            return []  # thinking and signature deltas: reasoning has no place in the answer
        if kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                call = len(self._tools)
                self._tools[index] = call
                return [chat.ToolStarted(call, str(block.get("id")), str(block.get("name")))]
            if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
                return [chat.TextDelta(str(block["text"]))]
            return []
        if kind == "message_start":
            msg = obj.get("message")
            if not isinstance(msg, dict):
                return [chat.Unreadable()]
            usage = _usage(msg.get("usage"))
            return [chat.Started(str(msg.get("id") or ""), str(msg.get("model") or ""), usage)]
        if kind == "message_delta":
            delta = obj.get("delta")
            stop = delta.get("stop_reason") if isinstance(delta, dict) else None
            finish = _FINISH.get(stop, "stop") if isinstance(stop, str) else None
            return [chat.Finished(finish, _usage(obj.get("usage")))]
        if kind == "message_stop":
            return [chat.Ended()]
        if kind == "error":
            err = obj.get("error")
            err = err if isinstance(err, dict) else {}
            return [chat.Failed(str(err.get("type") or "error"), str(err.get("message") or ""))]
        return []  # ping, content_block_stop, and anything newer: nothing to relay
