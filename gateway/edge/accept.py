"""Accept stage: read the body once (bounded), parse it once, validate what the gateway needs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestPayloadError

from gateway.edge.errors import (
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

# The field each operation cannot do without, checked before any upstream is bothered.
REQUIRED_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
# Content codings aiohttp can decode (br and zstd only with their optional packages: without
# them aiohttp refuses the request itself, see gateway.edge.protocol). Others would pass as is.
CODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate", "br", "zstd"})
BAD_ENCODING = (
    "The request body could not be decoded with its Content-Encoding "
    "(corrupt, or not identity, gzip or deflate)."
)


# orjson reads 1024 levels of nesting but writes only 254 (containers, the top one included): a
# body the gateway could not send on is refused before any target's permit is taken.
MAX_DEPTH = 254


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests more than `limit` containers deep. Walks containers only, so a
    20 MiB string costs nothing (encoding the body to find out cost a copy of it)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[Any, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any] = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


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


class BodyBytes:
    """Request-body bytes held by requests in flight, against `server.max_body_bytes_in_flight`.

    A request holds its body's size from the moment it is known — its Content-Length before
    the body is read, else as the (decompressed) bytes arrive — until it ends: the body, its
    parsed form and each attempt's copy live that long. A request that would take the total
    over the bound while others hold bytes is refused with 503 and Retry-After; one request
    alone is always admitted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def hold(self) -> Held:
        return Held(self)

    def take(self, n: int, own: int) -> None:
        if self.held > own and self.held + n > self.limit:
            raise Overloaded(
                "Too many large request bodies are in flight "
                "(server.max_body_bytes_in_flight); retry shortly.",
                retry_after_s=1.0,
            )
        self.held += n

    def give(self, n: int) -> None:
        self.held = max(0, self.held - n)


class Held:
    """One request's share of `BodyBytes`; given back when the request ends (`with`)."""

    def __init__(self, pool: BodyBytes) -> None:
        self._pool = pool
        self.n = 0

    def grow_to(self, n: int) -> None:
        if n > self.n:
            self._pool.take(n - self.n, self.n)
            self.n = n

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.give(self.n)
        self.n = 0


async def read_body(
    request: web.Request, limit: int, timeout_s: float, held: Held | None = None
) -> bytes | bytearray:
    """The body, checked (type, encoding, size, time); counted in `held` when given."""
    ctype = request.headers.get("Content-Type", "")
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime and mime != "application/json" and not mime.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got '{mime}'.", param="Content-Type"
        )
    coding = request.headers.get("Content-Encoding")
    if coding and any(c.strip().lower() not in CODINGS for c in coding.split(",") if c.strip()):
        raise UnsupportedMediaType(
            BAD_ENCODING, param="Content-Encoding", code="unsupported_content_encoding"
        )
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(limit)
    content = request.content
    try:
        if content.is_eof():  # the usual case: a small body came with the headers, all buffered
            return _counted(content.read_nowait(-1), limit, held)
        async with asyncio.timeout(timeout_s):
            return await _read_at_most(request, limit, held)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout_s:g} s (server.body_timeout_s)."
        ) from None
    except (http_exceptions.BadHttpMessage, RequestPayloadError) as exc:
        raise _body_error(exc, limit) from None


def _counted(body: bytes, limit: int, held: Held | None) -> bytes:
    if len(body) > limit:
        raise PayloadTooLarge(limit)
    if held is not None:
        held.grow_to(len(body))
    return body


async def _read_at_most(request: web.Request, limit: int, held: Held | None) -> bytearray:
    """The (decompressed) body, read once into one buffer: not `request.read()`, which keeps
    a second copy cached on the request for its whole life. orjson parses the buffer as is."""
    known = request.content_length
    if held is not None and known and not request.headers.get("Content-Encoding"):
        held.grow_to(known)  # a large body is refused before it is read
    body = bytearray()
    content = request.content
    while chunk := await content.readany():
        body += chunk
        if len(body) > limit:  # chunked and compressed bodies included
            raise PayloadTooLarge(limit)
        if held is not None:
            held.grow_to(len(body))
    return body


def parse_payload(
    body: bytes | bytearray, operation: str, required: str | None = None
) -> dict[str, Any]:
    """The request body as a JSON object with a model, checked; `required`: the field it
    must have (`REQUIRED_FIELD`'s for the operation, unless the client's format says other)."""
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
    # Depth needs as many brackets as levels: a body with fewer is never walked.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and too_deep(payload):
        raise InvalidRequest(
            f"The request body is nested too deeply (the gateway forwards at most "
            f"{MAX_DEPTH} levels).",
            code="too_deeply_nested",
        )
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
    required = required or REQUIRED_FIELD[operation]
    if payload.get(required) is None:
        raise InvalidRequest(
            f"You must provide a '{required}' parameter.", param=required, code="missing_field"
        )
    return payload
