"""OpenAI's Chat Completions as the *provider's* side of a translation (an Anthropic client
served by an OpenAI-format target): a chat-model request encoded for `POST /chat/completions`,
its answer, its stream chunks and its errors decoded.
"""

from __future__ import annotations

from typing import Any

from gateway.formats import chat
from gateway.formats.openai_chat import signature_of, tool_uses

PATH = "/chat/completions"
_FINISH: dict[str, chat.Finish] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _leaf(part: chat.Text | chat.Image) -> dict[str, Any]:
    if isinstance(part, chat.Text):
        return {"type": "text", "text": part.text}
    url = f"data:{part.media_type};base64,{part.data}" if part.data else part.url
    return {"type": "image_url", "image_url": {"url": url}}


def _content(parts: list[chat.Text | chat.Image]) -> str | list[dict[str, Any]]:
    """Text alone as a string (what every OpenAI-compatible server reads), else parts."""
    if all(isinstance(p, chat.Text) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, chat.Text))
    return [_leaf(p) for p in parts]


def _user(m: chat.Message, dropped: set[str]) -> list[dict[str, Any]]:
    """A user turn: its tool results first (one `tool` message each), then what it says."""
    out: list[dict[str, Any]] = []
    said: list[chat.Text | chat.Image] = []
    for p in m.parts:
        if isinstance(p, chat.ToolResult):
            texts = [c for c in p.content if isinstance(c, chat.Text)]
            if len(texts) < len(p.content):
                dropped.add("tool_result.image")  # a tool message carries text only
            if p.is_error:
                dropped.add("tool_result.is_error")
            content = "".join(t.text for t in texts)
            out.append({"role": "tool", "tool_call_id": p.tool_use_id, "content": content})
        elif isinstance(p, chat.Text | chat.Image):
            said.append(p)
        else:
            dropped.add("thinking" if isinstance(p, chat.Thinking) else "content.tool_use")
    if said:
        out.append({"role": "user", "content": _content(said)})
    return out


def _assistant(m: chat.Message, dropped: set[str]) -> dict[str, Any]:
    text = "".join(p.text for p in m.parts if isinstance(p, chat.Text))
    calls = [
        {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
        for p in m.parts
        if isinstance(p, chat.ToolUse)
    ]
    if any(isinstance(p, chat.Thinking) for p in m.parts):
        dropped.add("thinking")  # a signed block is valid only with its own vendor
    if any(isinstance(p, chat.Image | chat.ToolResult) for p in m.parts):
        dropped.add("content.assistant")
    out: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tool(t: chat.Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "description": t.description, "parameters": t.schema}
    if t.strict:
        fn["strict"] = True
    return {"type": "function", "function": fn}


def _response_format(fmt: chat.ResponseFormat) -> dict[str, Any]:
    if fmt.schema is None:
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema}
    if fmt.strict:
        spec["strict"] = True
    return {"type": "json_schema", "json_schema": spec}


def encode_request(req: chat.ChatRequest, model: str) -> tuple[dict[str, Any], frozenset[str]]:
    """The body for `POST /chat/completions`, and what of the request it could not carry."""
    dropped = set(req.dropped)
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": "\n\n".join(t.text for t in req.system)})
    for m in req.messages:
        if m.role == "user":
            messages.extend(_user(m, dropped))
        else:
            messages.append(_assistant(m, dropped))
    body: dict[str, Any] = {"model": model, "messages": messages}
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    for key, value in (("temperature", req.temperature), ("top_p", req.top_p)):
        if value is not None:
            body[key] = value
    if req.stop:
        body["stop"] = list(req.stop)
    if req.seed is not None:
        body["seed"] = req.seed
    if req.n > 1:
        body["n"] = req.n
    for key, value in (
        ("presence_penalty", req.presence_penalty),
        ("frequency_penalty", req.frequency_penalty),
    ):
        if value is not None:
            body[key] = value
    if req.response_format is not None:
        body["response_format"] = _response_format(req.response_format)
    if req.stream:
        body["stream"] = True
        if req.include_usage:
            body["stream_options"] = {"include_usage": True}
    if req.user:
        body["user"] = req.user
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
    choice = req.tool_choice
    if choice is not None and (req.tools or choice.mode == "none"):
        if choice.mode == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            body["tool_choice"] = choice.mode
        if not choice.parallel and req.tools:
            body["parallel_tool_calls"] = False
    return body, frozenset(dropped)


def _count(raw: Any, key: str) -> int:
    v = raw.get(key) if isinstance(raw, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _usage(raw: Any) -> chat.Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    return chat.Usage(
        _count(raw, "prompt_tokens"),
        _count(raw, "completion_tokens"),
        _count(details, "cached_tokens"),
    )


def _finish(raw: Any) -> chat.Finish | None:
    return _FINISH.get(raw, "stop") if isinstance(raw, str) and raw else None


def decode_reply(obj: Any) -> chat.ChatReply | None:
    """A chat completion; None for anything else."""
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    dropped: set[str] = set()
    parts: list[chat.Part] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        parts.append(chat.Text(text))
    parts.extend(tool_uses(message.get("tool_calls")))
    if message.get("reasoning_content") or message.get("reasoning"):
        dropped.add("reasoning_content")  # unsigned: no Anthropic thinking block can carry it
    if len(choices) > 1:
        dropped.add("choices")
    return chat.ChatReply(
        str(obj.get("id") or ""),
        str(obj.get("model") or ""),
        tuple(parts),
        _finish(choices[0].get("finish_reason")),
        _usage(obj.get("usage")),
        frozenset(dropped),
    )


def error_of(body: bytes) -> tuple[str, str]:
    """(type, message) of an OpenAI error body; ("", "") when it is not one."""
    return chat.error_fields(body, bare_message=True)


class StreamDecoder:
    """OpenAI chunk events (their `data`) as stream events in the model's terms."""

    def __init__(self) -> None:
        self._started = False
        self._calls: set[int] = set()  # tool call indexes already started

    def decode(self, data: bytes) -> list[chat.Event]:
        if data.strip() == b"[DONE]":
            return [chat.Ended()]
        obj = chat.json_object(data)
        if obj is None:
            return [chat.Unreadable()]
        if obj.get("error"):
            kind, message = error_of(data)
            return [chat.Failed(kind or "api_error", message)]
        out: list[chat.Event] = []
        if not self._started:
            self._started = True
            out.append(chat.Started(str(obj.get("id") or ""), str(obj.get("model") or "")))
        choices = obj.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if isinstance(choice, dict):
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out.extend(self._delta(delta))
            finish = _finish(choice.get("finish_reason"))
            if finish is not None:
                out.append(chat.Finished(finish, _usage(obj.get("usage"))))
                return out
        elif choices is not None and not isinstance(choices, list):
            return [chat.Unreadable()]
        usage = _usage(obj.get("usage"))
        if usage is not None:
            out.append(chat.Finished(None, usage))  # the usage chunk after the finish
        return out

    def _delta(self, delta: dict[str, Any]) -> list[chat.Event]:
        out: list[chat.Event] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            out.append(chat.TextDelta(text))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            index = call.get("index")
            index = index if isinstance(index, int) else 0
            fn = call.get("function")
            fn = fn if isinstance(fn, dict) else {}
            if index not in self._calls:
                self._calls.add(index)
                call_id, name = str(call.get("id") or ""), str(fn.get("name") or "")
                out.append(chat.ToolStarted(index, call_id, name, signature_of(call)))
            args = fn.get("arguments")
            if isinstance(args, str) and args:
                out.append(chat.ToolArguments(index, args))
        return out
