"""OpenAI's Responses API as the *client's* side of a translation (`POST /v1/responses` on the
gateway, served by a target of any format - an OpenAI-format target speaks Chat Completions):
a request decoded into the chat model, an answer encoded back as a `response` object.

Stateless: nothing is stored, so what needs a stored response or conversation
(`previous_response_id`, `conversation`, `background`, a stored `prompt`, an `item_reference`
input) is refused up front (`gateway.edge.ingress`); `store` is accepted and means nothing.
Shapes follow the `openai` SDK's types (`ResponseCreateParams`, `Response`,
`ResponseInputItemParam`). Decoding is lenient, as for Chat Completions: what has no place in
the model is named in `ChatRequest.dropped`, never an error.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.formats import chat, openai_chat

# Request fields the model carries (the rest are dropped, unless neutral).
_HANDLED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "user",
    }
)
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "store": (None, True, False),  # nothing is stored either way: not a loss
    "stream_options": (None, {}, {"include_obfuscation": False}, {"include_obfuscation": True}),
    "include": (None, []),
    "truncation": (None, "disabled"),
    "reasoning": (None, {}),
    "metadata": (None, {}),
    "service_tier": (None, "auto", "default"),
    "top_logprobs": (None, 0),
}
# What needs server-side state (`gateway.edge.ingress` refuses these with a 400).
STATEFUL = ("previous_response_id", "conversation", "prompt")
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


def _leaf(part: Any, dropped: set[str]) -> chat.Text | chat.Image | None:
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        text = part.get("refusal" if kind == "refusal" else "text")
        return chat.Text(text) if isinstance(text, str) and text else None
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, str) and url:
            return openai_chat.image(url)
        dropped.add("input_image.file_id")  # an uploaded file: only OpenAI has it
        return None
    dropped.add(f"content.{kind}" if isinstance(kind, str) else "content")
    return None


def _leaves(content: Any, dropped: set[str]) -> tuple[chat.Text | chat.Image, ...]:
    """A message's or a tool output's content: a string or a list of parts."""
    if isinstance(content, str):
        return (chat.Text(content),) if content else ()
    parts = (_leaf(p, dropped) for p in content) if isinstance(content, list) else ()
    return tuple(p for p in parts if p is not None)


def _results_only(m: chat.Message) -> bool:
    return m.role == "user" and all(isinstance(p, chat.ToolResult) for p in m.parts)


class _Turns:
    """Input items gathered into the chat model's turns, as the other formats hold them: a
    function call joins the assistant turn before it; function call outputs gather in one
    user turn, which what the user says next joins (after the results). Other messages stay
    turns of their own."""

    def __init__(self, dropped: set[str]) -> None:
        self.dropped = dropped
        self.messages: list[chat.Message] = []
        self.system: list[chat.Text] = []

    def add(self, role: chat.Role, parts: tuple[chat.Part, ...], *, join: bool = False) -> None:
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == role and (join or _results_only(last)):
            self.messages[-1] = chat.Message(role, (*last.parts, *parts))
        else:
            self.messages.append(chat.Message(role, parts))

    def item(self, item: Any) -> None:
        if not isinstance(item, dict):
            return
        kind = item.get("type", "message")
        if kind == "message":
            self._message(item)
        elif kind == "function_call":
            args = item.get("arguments")
            call = chat.ToolUse(
                str(item.get("call_id") or ""),
                str(item.get("name") or ""),
                args if isinstance(args, str) else "{}",
                openai_chat.signature_of(item),
            )
            self.add("assistant", (call,), join=True)
        elif kind == "function_call_output":
            output = _leaves(item.get("output"), self.dropped)
            self.add("user", (chat.ToolResult(str(item.get("call_id") or ""), output),))
        else:  # reasoning (OpenAI's encrypted content), built-in tools' calls, ...
            self.dropped.add(f"input.{kind}" if isinstance(kind, str) else "input")

    def _message(self, item: dict[str, Any]) -> None:
        role = item.get("role")
        parts = _leaves(item.get("content"), self.dropped)
        if role in ("system", "developer"):
            if self.messages:
                self.dropped.add("system_position")  # the chat model has one system prompt
            self.system.extend(p for p in parts if isinstance(p, chat.Text))
        elif role == "assistant":  # with the calls around it: one assistant turn
            self.add(role, parts, join=True)
        elif role == "user":
            self.add(role, parts)
        else:
            self.dropped.add(f"input.role.{role if isinstance(role, str) else type(role).__name__}")


def _tools(raw: Any, dropped: set[str]) -> tuple[chat.Tool, ...]:
    out: list[chat.Tool] = []
    for t in raw if isinstance(raw, list) else []:
        kind = t.get("type") if isinstance(t, dict) else None
        if kind != "function" or not isinstance(t.get("name"), str):
            dropped.add(f"tools.{kind}" if isinstance(kind, str) else "tools")  # built-in tools
            continue
        out.append(openai_chat.function_tool(t))
    return tuple(out)


def _tool_choice(raw: Any, parallel: Any, dropped: set[str]) -> chat.ToolChoice | None:
    may_parallel = parallel is not False
    if isinstance(raw, str) and raw in ("auto", "none", "required"):
        return chat.ToolChoice(raw, parallel=may_parallel)  # type: ignore[arg-type]
    if isinstance(raw, dict):
        if raw.get("type") == "function" and isinstance(raw.get("name"), str):
            return chat.ToolChoice("tool", raw["name"], parallel=may_parallel)
        dropped.add("tool_choice")  # allowed_tools, a built-in tool, ...
    return None if may_parallel else chat.ToolChoice("auto", parallel=False)


def _format(raw: Any, dropped: set[str]) -> chat.ResponseFormat | None:
    """`text.format`: text, a JSON object, or JSON that matches a schema."""
    if not isinstance(raw, dict):
        return None
    if raw.get("verbosity") not in (None, "medium"):
        dropped.add("text.verbosity")
    fmt = raw.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return chat.ResponseFormat()
    if kind == "json_schema" and isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
        name = str(fmt.get("name") or "")
        return chat.ResponseFormat(fmt["schema"], name, fmt.get("strict") is True)
    dropped.add("text.format")
    return None


def decode_request(payload: dict[str, Any]) -> chat.ChatRequest:
    dropped: set[str] = set()
    turns = _Turns(dropped)
    instructions = payload.get("instructions")
    if isinstance(instructions, str) and instructions:
        turns.system.append(chat.Text(instructions))
    raw = payload.get("input")
    if isinstance(raw, str):
        turns.add("user", (chat.Text(raw),) if raw else ())
    for item in raw if isinstance(raw, list) else ():
        turns.item(item)
    tools = _tools(payload.get("tools"), dropped)
    for key, value in payload.items():
        if key not in _HANDLED and not any(value == v for v in _NEUTRAL.get(key, (None,))):
            dropped.add(key)
    max_tokens = payload.get("max_output_tokens")
    user = payload.get("user") or payload.get("safety_identifier")
    tool_choice = _tool_choice(
        payload.get("tool_choice"), payload.get("parallel_tool_calls"), dropped
    )
    return chat.ChatRequest(
        model=str(payload.get("model") or ""),
        messages=tuple(turns.messages),
        system=tuple(turns.system),
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
        else None,
        temperature=chat.number(payload.get("temperature")),
        top_p=chat.number(payload.get("top_p")),
        response_format=_format(payload.get("text"), dropped),
        stream=payload.get("stream") is True,
        include_usage=True,  # a Responses stream always ends with its usage
        user=user if isinstance(user, str) else "",
        dropped=frozenset(dropped),
    )


# -- answers ----------------------------------------------------------------------------------


def response_id(upstream_id: str) -> str:
    """`resp_...` for an answer's id (`chat.own_id`)."""
    return chat.own_id(upstream_id, "resp_")


def usage(u: chat.Usage | None) -> dict[str, Any]:
    u = u or chat.Usage()
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def status_of(finish: chat.Finish | None) -> tuple[str, dict[str, str] | None]:
    """A finish as the response's `status` and `incomplete_details`."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def message_item(rid: str, text: str, status: str = "completed") -> dict[str, Any]:
    parts = [text_part(text)] if text else []
    return {
        "type": "message",
        "id": "msg_" + rid[len("resp_") :],
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def call_item(
    call_id: str, name: str, arguments: str, status: str = "completed", signature: str = ""
) -> dict[str, Any]:
    """A function call; its `call_id` is the tool-use id, intact (the client sends it back),
    and a Gemini thought signature rides along as on OpenAI's tool calls
    (`openai_chat.signature_of`: the client sends the item back with it)."""
    out: dict[str, Any] = {
        "type": "function_call",
        "id": "fc_" + call_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
    if signature:
        out["extra_content"] = {"google": {"thought_signature": signature}}
    return out


def reasoning_item(rid: str, text: str) -> dict[str, Any]:
    """Reasoning a model showed, as open-weight models' reasoning items carry it."""
    return {
        "type": "reasoning",
        "id": "rs_" + rid[len("resp_") :],
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def response(
    rid: str,
    model: str,
    output: list[dict[str, Any]],
    status: str,
    *,
    usage_: chat.Usage | None = None,
    incomplete: dict[str, str] | None = None,
    error: dict[str, str] | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A `response` object; `usage_` None leaves its usage out (a response still running)."""
    out: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()) if created is None else created,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "store": False,  # nothing is kept: there is no previous_response_id to give
    }
    if usage_ is not None:
        out["usage"] = usage(usage_)
    return out


def encode_reply(reply: chat.ChatReply, model: str = "") -> dict[str, Any]:
    """The answer as a `response` object; `model`: the one asked for, if it names none."""
    rid = response_id(reply.id)
    output: list[dict[str, Any]] = []
    thinking = "".join(p.text for p in reply.parts if isinstance(p, chat.Thinking))
    if thinking:
        output.append(reasoning_item(rid, thinking))
    text = "".join(p.text for p in reply.parts if isinstance(p, chat.Text))
    if text:
        output.append(message_item(rid, text))
    output.extend(
        call_item(p.id, p.name, p.arguments, signature=p.signature)
        for p in reply.parts
        if isinstance(p, chat.ToolUse)
    )
    status, incomplete = status_of(reply.finish)
    return response(
        rid, reply.model or model, output, status, usage_=reply.usage, incomplete=incomplete
    )


def error_body(status: int, kind: str, message: str, *, context: bool = False) -> bytes:
    """An error in OpenAI's shape (the Responses API's errors are Chat Completions' errors),
    a prompt too long for the model naming `input`."""
    return openai_chat.error_body(status, kind, message, context=context, param="input")
