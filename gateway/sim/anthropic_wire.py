"""Anthropic Messages API wire shapes the simulated provider sends: messages, stream events,
tool use, the models list and errors (as in the ``anthropic`` SDK's ``types``)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.sim.tools import ToolCall

TOOL_USE_PREFIX = "toolu_"
MODELS_CREATED_AT = "2025-01-01T00:00:00Z"
# What the "malformed" and "garbled" faults send: an event whose JSON never closes.
SSE_MALFORMED = b'event: content_block_delta\ndata: {"type": "content_block_delta",\n\n'
MALFORMED_BODY = b'{"type": "message", "content": ['  # a non-streamed "malformed" answer

_STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event, named after its ``type``, carrying ``event`` as JSON."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def new_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    if status in _STATUS_TYPES:
        return _STATUS_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` as Anthropic sends it."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_event(message: str) -> bytes:
    """The in-band ``event: error`` an ``error_event`` fault puts into a stream."""
    return sse(error_body(529, message))


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def tool_use_block(call: ToolCall, *, streamed: bool = False) -> dict[str, Any]:
    """A ``tool_use`` content block; ``streamed``: as ``content_block_start`` opens it (its
    input comes in ``input_json_delta`` events)."""
    return {
        "type": "tool_use",
        "id": TOOL_USE_PREFIX + call.id_hash,
        "name": call.name,
        "input": {} if streamed else call.input,
    }


def message(
    mid: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    use: dict[str, int],
    stop_sequence: str | None = None,
) -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": use,
    }


def _stream(
    mid: str,
    model: str,
    block: dict[str, Any],
    deltas: list[dict[str, Any]],
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
    stop_sequence: str | None = None,
) -> list[dict[str, Any]]:
    """message_start, content_block_start, ping, the deltas, content_block_stop and
    message_delta (the caller adds message_stop: the terminator)."""
    start = message(mid, model, [], None, usage(input_tokens, 1))
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": block},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"output_tokens": output_tokens},
        },
    ]


MESSAGE_STOP: dict[str, Any] = {"type": "message_stop"}


def text_events(
    mid: str,
    model: str,
    words: list[str],
    input_tokens: int,
    output_tokens: int,
    stop_sequence: str | None = None,
) -> list[dict[str, Any]]:
    """A text answer's stream, one ``text_delta`` per word, without ``message_stop``; it
    ended at ``stop_sequence`` when one is given."""
    deltas = [{"type": "text_delta", "text": word} for word in words]
    block = {"type": "text", "text": ""}
    reason = "end_turn" if stop_sequence is None else "stop_sequence"
    return _stream(mid, model, block, deltas, reason, input_tokens, output_tokens, stop_sequence)


def tool_use_events(
    mid: str, model: str, call: ToolCall, input_tokens: int
) -> list[dict[str, Any]]:
    """A tool call's stream, its input in ``input_json_delta`` pieces, without
    ``message_stop``."""
    deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in call.pieces()]
    block = tool_use_block(call, streamed=True)
    return _stream(mid, model, block, deltas, "tool_use", input_tokens, call.output_tokens())


def models(ids: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``GET /v1/models``: one page holding every model."""
    data = [
        {
            "type": "model",
            "id": m,
            "display_name": m,
            "created_at": MODELS_CREATED_AT,
            "lifecycle": "active",
        }
        for m in ids
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }
