"""OpenAI wire shapes the simulated provider sends: completions, chunks, embeddings, errors."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.sim.tools import ToolCall

OPENAI_CALL_PREFIX = "call_"
SSE_DONE = b"data: [DONE]\n\n"
# What the "malformed" and "garbled" faults send: a data line whose JSON never closes.
SSE_MALFORMED = b'data: {"choices": [\n\n'
MALFORMED_BODY = b'{"choices": ['  # a non-streamed "malformed" answer

_STATUS_TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
_STATUS_CODES: dict[int, str] = {429: "rate_limit_exceeded"}


def sse(obj: Any) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_event(message: str) -> bytes:
    """The in-band error an ``error_event`` fault puts into a stream."""
    return sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status in _STATUS_TYPES:
        return _STATUS_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "code", "param"}}`` as OpenAI sends it."""
    if code is None:
        code = _STATUS_CODES.get(status)
    if param is None and code == "context_length_exceeded":
        param = "messages"
    return {"error": {"message": message, "type": error_type(status), "code": code, "param": param}}


def chat_completion(
    cid: str, created: int, model: str, text: str, use: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": use,
        "system_fingerprint": "fp_sim",
    }


def _chat_stream(
    cid: str,
    created: int,
    model: str,
    deltas: list[dict[str, Any]],
    finish_reason: str,
    use: dict[str, int] | None,
) -> list[dict[str, Any]]:
    """A chunk per delta, a ``finish_reason`` chunk, then (when ``use`` is given, i.e.
    ``stream_options.include_usage``) a usage chunk with no choices."""

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_sim",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if use is not None:
            out["usage"] = None
        return out

    chunks = [chunk(delta, None) for delta in deltas]
    chunks.append(chunk({}, finish_reason))
    if use is not None:
        chunks.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_sim",
                "choices": [],
                "usage": use,
            }
        )
    return chunks


def chat_chunks(
    cid: str, created: int, model: str, words: list[str], use: dict[str, int] | None
) -> list[dict[str, Any]]:
    """A chat stream: a role chunk, one chunk per word, a ``finish_reason`` chunk, then (when
    ``use`` is given, i.e. ``stream_options.include_usage``) a usage chunk with no choices."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": word} for word in words]
    return _chat_stream(cid, created, model, deltas, "stop", use)


def tool_call_completion(
    cid: str, created: int, model: str, call: ToolCall, use: dict[str, int]
) -> dict[str, Any]:
    """A chat completion whose answer is one tool call (``finish_reason: tool_calls``)."""
    out = chat_completion(cid, created, model, "", use)
    choice = out["choices"][0]
    choice["message"] = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": OPENAI_CALL_PREFIX + call.id_hash,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
        ],
    }
    choice["finish_reason"] = "tool_calls"
    return out


def tool_call_chunks(
    cid: str, created: int, model: str, call: ToolCall, use: dict[str, int] | None
) -> list[dict[str, Any]]:
    """A chat stream of one tool call: the role with the call's id, type and name (arguments
    ""), the arguments in pieces, then ``finish_reason: tool_calls`` (and the usage chunk)."""
    head = {
        "index": 0,
        "id": OPENAI_CALL_PREFIX + call.id_hash,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [head]}]
    deltas += [
        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in call.pieces()
    ]
    return _chat_stream(cid, created, model, deltas, "tool_calls", use)


def text_completion(
    cid: str, created: int, model: str, text: str, use: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": use,
    }


def text_chunks(
    cid: str, created: int, model: str, words: list[str], use: dict[str, int] | None
) -> list[dict[str, Any]]:
    """A legacy completions stream: one chunk per word, a ``finish_reason`` chunk, and an
    optional usage chunk."""

    def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    chunks = [chunk(word, None) for word in words]
    chunks.append(chunk("", "stop"))
    if use is not None:
        last = chunk("", None)
        last["choices"] = []
        last["usage"] = use
        chunks.append(last)
    return chunks


def embeddings(model: str, vectors: list[list[float]] | list[str], tokens: int) -> dict[str, Any]:
    """An embeddings list; ``vectors`` holds float lists or base64 strings."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def models(ids: list[str] | tuple[str, ...], owner: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m in ids],
    }
