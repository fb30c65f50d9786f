"""Accept stage: read the body once (bounded), parse it once, validate what the gateway needs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

# The field each operation cannot do without, checked before any upstream is bothered.
REQUIRED_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
# Content codings aiohttp can decode (br and zstd only with their optional packages: without
# them aiohttp refuses the request itself, see gateway.protocol). Others would pass as is.
CODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate", "br", "zstd"})
BAD_ENCODING = (
    "The request body could not be decoded with its Content-Encoding "
    "(corrupt, or not identity, gzip or deflate)."
)


def _body_error(exc: BaseException, limit: int) -> Exception:
    """What a body aiohttp could not read means for the caller."""
    if isinstance(exc, RequestPayloadError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, http_exceptions.DecompressSizeError):
        return PayloadTooLarge(limit)
    if isinstance(exc, http_exceptions.ContentEncodingError):
        return UnsupportedMediaType(
            BAD_ENCODING, param="Content-Encoding", code="unsupported_content_encoding"
        )
    return InvalidRequest(
        "The request body is malformed (chunked encoding or length).", code="bad_http_request"
    )


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    ctype = request.headers.get("Content-Type", "")
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime and mime != "application/json" and not mime.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got '{mime}'.", param="Content-Type"
        )
    coding = request.headers.get("Content-Encoding", "")
    if any(c.strip().lower() not in CODINGS for c in coding.split(",") if c.strip()):
        raise UnsupportedMediaType(
            BAD_ENCODING, param="Content-Encoding", code="unsupported_content_encoding"
        )
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(limit)
    try:
        # aiohttp enforces the same limit (client_max_size), chunked bodies included, after
        # decompression.
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(limit) from None
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout_s:g} s (server.body_timeout_s)."
        ) from None
    except (http_exceptions.BadHttpMessage, RequestPayloadError) as exc:
        raise _body_error(exc, limit) from None


def parse_payload(body: bytes, operation: str) -> dict[str, Any]:
    if not body:
        raise InvalidRequest(
            "The request body is empty; expected a JSON object.", code="invalid_json"
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.",
            code="invalid_json",
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        # orjson reads 1024 levels of nesting but writes only 254: a body the gateway could
        # not send on is refused here, before any target's permit is taken.
        orjson.dumps(payload)
    except TypeError:
        raise InvalidRequest(
            "The request body is nested too deeply (the gateway forwards at most 254 levels).",
            code="too_deeply_nested",
        ) from None
    model = payload.get("model")
    if model is None or model == "":
        raise InvalidRequest(
            "You must provide a model parameter.", param="model", code="missing_field"
        )
    if not isinstance(model, str):
        raise InvalidRequest("'model' must be a string.", param="model", code="invalid_type")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream", code="invalid_type")
    if operation == "embeddings" and stream:
        raise InvalidRequest("Embeddings cannot be streamed.", param="stream", code="invalid_value")
    required = REQUIRED_FIELD[operation]
    if payload.get(required) is None:
        raise InvalidRequest(
            f"You must provide a '{required}' parameter.", param=required, code="missing_field"
        )
    return payload
