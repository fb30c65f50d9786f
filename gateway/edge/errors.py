"""Every error a caller can see, each mapped to one OpenAI error shape.

    GatewayError                      {"error": {"message", "type", "code", "param"}}
    ├── InvalidRequest          400   invalid_request_error (bad JSON, missing/invalid field)
    ├── UnsupportedMediaType    415   invalid_request_error
    ├── NotFound                404   invalid_request_error (no such path)
    │   └── UnknownModel        404   code model_not_found, param model, names the aliases
    ├── Conflict                409   invalid_request_error (e.g. feedback already recorded)
    ├── Unprocessable           422   invalid_request_error (a reloaded config was rejected)
    ├── MethodNotAllowed        405   invalid_request_error
    ├── PayloadTooLarge         413   invalid_request_error, names the limit
    ├── RequestTimeout          408   invalid_request_error (the body did not arrive in time)
    ├── Unauthorized            401   authentication_error (admin endpoints, when protected)
    ├── AllCandidatesFailed     502   upstream_error, with a short per-attempt summary
    ├── NoCandidateAvailable    503   service_unavailable, with Retry-After
    │   └── Overloaded          503   code overloaded: too many large bodies in flight
    ├── GatewayTimeout          504   timeout_error: the request's deadline ran out
    ├── ShuttingDown            503   service_unavailable
    ├── HttpError               4xx   invalid_request_error (a refusal of aiohttp's own)
    └── Internal                500   server_error, code internal_error (a bug of ours)

On the Anthropic ingress (`/v1/messages`, `gateway.edge.ingress`) the same errors, with the
same statuses, come in Anthropic's shape instead: `{"type": "error", "error": {"type",
"message"}}`, the type from the status (`gateway.formats.anthropic_ingress.error_type`).

Messages never contain credentials: they are built from our own vocabulary, target ids and
status codes, never from upstream request headers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import orjson

from gateway.formats.anthropic_ingress import error_body as anthropic_error_body


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    close_connection = False  # the connection cannot be reused after this answer

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: Mapping[str, str] = headers or {}

    def shape(self) -> dict[str, str | None]:
        """The `error` object of OpenAI's error body."""
        return error_shape(self.message, self.type, self.code, self.param)

    def body(self, ingress: str = "openai") -> bytes:
        """The error's body in the shape of the client's format (`gateway.edge.ingress`)."""
        if ingress == "anthropic":
            return anthropic_error_body(self.status, self.message)
        return orjson.dumps({"error": self.shape()})


def counted(n: int, noun: str) -> str:
    """`1 attempt`, `2 attempts`: a count for a message a person reads."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def error_shape(
    message: str, type_: str, code: str | None, param: str | None
) -> dict[str, str | None]:
    """The `error` object of OpenAI's error body: the one place its fields are named."""
    return {"message": message, "type": type_, "code": code, "param": param}


def error_body(message: str, type_: str, code: str | None, param: str | None) -> bytes:
    """OpenAI's error body, for an error that is not a GatewayError."""
    return orjson.dumps({"error": error_shape(message, type_, code, param)})


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class UnknownModel(NotFound):
    code = "model_not_found"

    def __init__(self, model: str, aliases: tuple[str, ...]) -> None:
        known = ", ".join(aliases) if aliases else "none configured"
        super().__init__(
            f"The model '{model}' does not exist on this gateway. Available models: {known}.",
            param="model",
        )


class Unprocessable(GatewayError):
    status = 422
    type = "invalid_request_error"
    code = "unprocessable"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            f"Request body exceeds the gateway limit of {limit_bytes} bytes "
            "(server.max_body_bytes)."
        )


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"
    close_connection = True  # the rest of the body may still be on its way


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class AllCandidatesFailed(GatewayError):
    status = 502
    type = "upstream_error"
    code = "all_candidates_failed"


class NoCandidateAvailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "no_candidate_available"

    def __init__(
        self, message: str, retry_after_s: float, headers: Mapping[str, str] | None = None
    ) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(message, headers={**(headers or {}), "Retry-After": str(seconds)})


class Overloaded(NoCandidateAvailable):
    code = "overloaded"


class GatewayTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    code = "deadline_exceeded"


class ShuttingDown(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "shutting_down"


class HttpError(GatewayError):
    """A refusal aiohttp itself raised: its status and reason."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Internal(GatewayError):
    status = 500
    type = "server_error"
    code = "internal_error"
