"""What differs between the sim's wire formats outside the endpoints themselves: the error
bodies, authentication, and the bytes faults put into a response (terminator, invalid lines,
in-band error)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from gateway.sim import (
    anthropic_endpoints,
    anthropic_wire,
    endpoints,
    gemini_endpoints,
    gemini_wire,
    wire,
)
from gateway.sim.endpoints import Reply
from gateway.sim.faults import Fault

DEFAULT_ERROR_EVENT_MESSAGE = "Overloaded"


@dataclass(frozen=True)
class Framing:
    """The format's bytes that a stream's delivery adds around or instead of its events."""

    done: bytes  # after the events of a complete stream: [DONE], message_stop, or (Gemini) none
    malformed_event: bytes  # an event whose JSON never closes (malformed, garbled)
    malformed_body: bytes  # a non-streamed answer that is not JSON (malformed)
    error_event: bytes  # the in-band error of the error_event fault


OPENAI_FRAMING = Framing(
    done=wire.SSE_DONE,
    malformed_event=wire.SSE_MALFORMED,
    malformed_body=wire.MALFORMED_BODY,
    error_event=wire.error_event(DEFAULT_ERROR_EVENT_MESSAGE),
)
ANTHROPIC_FRAMING = Framing(
    done=anthropic_wire.sse(anthropic_wire.MESSAGE_STOP),
    malformed_event=anthropic_wire.SSE_MALFORMED,
    malformed_body=anthropic_wire.MALFORMED_BODY,
    error_event=anthropic_wire.error_event(DEFAULT_ERROR_EVENT_MESSAGE),
)


GEMINI_FRAMING = Framing(
    done=b"",  # the chunk with the finishReason is the last: no terminator follows
    malformed_event=gemini_wire.SSE_MALFORMED,
    malformed_body=gemini_wire.MALFORMED_BODY,
    error_event=gemini_wire.error_event(DEFAULT_ERROR_EVENT_MESSAGE),
)
_FRAMINGS = {"anthropic": ANTHROPIC_FRAMING, "gemini": GEMINI_FRAMING}
_ERROR_EVENTS = {"anthropic": anthropic_wire.error_event, "gemini": gemini_wire.error_event}


# What every answer of an Anthropic-format sim carries, as Anthropic's API sends them (their
# values fixed: the sim has no limits), so tests can see them cross the gateway.
ANTHROPIC_RATELIMIT = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:00Z",
}


def answer_headers(fmt: str) -> dict[str, str]:
    """The headers every answer of format ``fmt`` carries (its rate-limit state)."""
    return dict(ANTHROPIC_RATELIMIT) if fmt == "anthropic" else {}


def framing(fmt: str, fault: Fault) -> Framing:
    """The framing for a response of format ``fmt`` shaped by ``fault``."""
    base = _FRAMINGS.get(fmt, OPENAI_FRAMING)
    if fault.mode != "error_event" or fault.message is None:
        return base
    build = _ERROR_EVENTS.get(fmt, wire.error_event)
    return Framing(base.done, base.malformed_event, base.malformed_body, build(fault.message))


def error_reply(fmt: str, status: int, message: str, code: str | None = None) -> Reply:
    """An error body in format ``fmt`` (Anthropic's and Gemini's have no ``code``)."""
    if fmt == "anthropic":
        return anthropic_endpoints.error_reply(status, message)
    if fmt == "gemini":
        return gemini_endpoints.error_reply(status, message)
    return endpoints.error_reply(status, message, code=code)


def status_fault(
    fmt: str, status: int, message: str, code: str | None, retry_after: float | str | None
) -> tuple[Reply, dict[str, str]]:
    """A ``status`` fault's error reply and the headers it adds: ``Retry-After``, or, for
    Gemini (which sends none), a ``RetryInfo`` in the body when it is a number of seconds."""
    if isinstance(retry_after, float) and retry_after.is_integer():
        retry_after = int(retry_after)
    if fmt == "gemini" and isinstance(retry_after, int | float):
        details = [gemini_wire.retry_info(retry_after)]
        return gemini_endpoints.error_reply(status, message, details), {}
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return error_reply(fmt, status, message, code), headers


def auth_error(
    fmt: str, headers: Mapping[str, str], api_key: str, query: Mapping[str, str] | None = None
) -> Reply | None:
    """The error for a request without the right key, or None when it may pass. OpenAI wants
    ``Authorization: Bearer KEY`` (else a 401); Anthropic ``x-api-key: KEY`` or, as the
    ``anthropic`` 2.x SDK sends its ``api_key``, ``Authorization: Bearer KEY`` (a 401); Gemini
    ``x-goog-api-key: KEY`` or ``?key=KEY`` (a wrong one is its 400 ``API_KEY_INVALID``, none a
    403)."""
    if fmt == "gemini":
        given = headers.get("x-goog-api-key", (query or {}).get("key"))
        if given == api_key:
            return None
        if given is None:
            message = (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API."
            )
            return gemini_endpoints.error_reply(403, message)
        invalid = gemini_wire.key_invalid()
        return Reply(400, orjson.dumps(invalid))
    bearer = headers.get("Authorization") == f"Bearer {api_key}"
    if fmt == "anthropic":
        given = headers.get("x-api-key")
        if given == api_key or (given is None and bearer):
            return None
        if given is not None:
            message = "invalid x-api-key"
        elif "Authorization" in headers:
            message = "invalid bearer token"
        else:
            message = "x-api-key header is required"
        return anthropic_endpoints.error_reply(401, message)
    if bearer:
        return None
    return endpoints.error_reply(401, "Incorrect API key provided.", code="invalid_api_key")
