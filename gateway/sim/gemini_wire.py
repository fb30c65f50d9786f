"""Gemini (Generative Language API) wire shapes the simulated provider sends: answers, stream
chunks, function calls, the models list and errors (as in the ``google-genai`` SDK's
``types``, in the REST API's camelCase).

A stream (``alt=sse``) is one ``data:`` event per chunk, each a whole
``GenerateContentResponse``, events ending in CRLF CRLF as Google's do; there is no terminator:
the last chunk carries the ``finishReason`` and the answer's ``usageMetadata``.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson

from gateway.sim.tools import ToolCall

API_VERSION = "v1beta"  # a provider's base_url is <sim>/v1beta, as Google's docs use
API_VERSIONS = ("v1", API_VERSION)  # served both, as Google does (google-genai 3.x uses v1)
SSE_MALFORMED = b'data: {"candidates": [\r\n\r\n'  # an event whose JSON never closes
MALFORMED_BODY = b'{"candidates": ['  # a non-streamed "malformed" answer
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

_STATUS_NAMES: dict[int, str] = {  # google.rpc.Code, by the HTTP status Google maps it to
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"


def new_id() -> str:
    return uuid.uuid4().hex[:22]  # a `responseId`


def status_name(status: int) -> str:
    if status in _STATUS_NAMES:
        return _STATUS_NAMES[status]
    return "UNAVAILABLE" if status == 529 else "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"


def error_body(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``{"error": {"code", "message", "status"[, "details"]}}`` as Google's APIs send it."""
    err: dict[str, Any] = {"code": status, "message": message, "status": status_name(status)}
    if details:
        err["details"] = details
    return {"error": err}


def retry_info(seconds: float) -> dict[str, Any]:
    """The ``RetryInfo`` detail of a 429: when to try again (Gemini sends no Retry-After)."""
    shown = int(seconds) if float(seconds).is_integer() else seconds
    return {"@type": RETRY_INFO, "retryDelay": f"{shown}s"}


def key_invalid() -> dict[str, Any]:
    """Gemini's answer to a wrong key: a 400, not a 401."""
    detail = {
        "@type": ERROR_INFO,
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    return error_body(400, "API key not valid. Please pass a valid API key.", [detail])


def error_event(message: str) -> bytes:
    """The in-band error an ``error_event`` fault puts into a stream (a 503 overload)."""
    return sse(error_body(503, message))


def usage(prompt_tokens: int, output_tokens: int | None) -> dict[str, int]:
    out = {"promptTokenCount": prompt_tokens}
    if output_tokens is not None:
        out["candidatesTokenCount"] = output_tokens
    out["totalTokenCount"] = prompt_tokens + (output_tokens or 0)
    return out


def response(
    rid: str,
    model: str,
    parts: list[dict[str, Any]],
    finish: str | None,
    use: dict[str, int],
) -> dict[str, Any]:
    """A ``GenerateContentResponse`` with one candidate (a whole answer, or a chunk of one)."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": use,
        "modelVersion": model,
        "responseId": rid,
    }


def signature(call: ToolCall) -> str:
    """The ``thoughtSignature`` a thinking Gemini model puts on a call's part (opaque base64 to
    a client: the sim's is derived from the call, so a test can tell it came back)."""
    return base64.b64encode(f"sim-thought:{call.name}:{call.id_hash}".encode()).decode()


def call_part(call: ToolCall) -> dict[str, Any]:
    """A ``functionCall`` part, without an ``id`` (as Gemini 2.x models answer), signed as a
    thinking model (2.5, 3) signs it: Gemini 3 wants the signature back with the call."""
    return {
        "functionCall": {"name": call.name, "args": call.input},
        "thoughtSignature": signature(call),
    }


def text_chunks(
    rid: str, model: str, words: list[str], prompt_tokens: int, output_tokens: int
) -> list[dict[str, Any]]:
    """A text answer's stream, one chunk per word; the last one finishes it."""
    out = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        use = usage(prompt_tokens, output_tokens if last else None)
        out.append(response(rid, model, [{"text": word}], "STOP" if last else None, use))
    return out


def models(ids: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``GET /v1beta/models``: one page holding every model."""
    return {
        "models": [
            {
                "name": f"models/{m}",
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 8192,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for m in ids
        ]
    }
