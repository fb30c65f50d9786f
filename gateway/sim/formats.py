"""What differs between the sim's two wire formats outside the endpoints themselves: the error
bodies, authentication, and the bytes faults put into a response (terminator, invalid lines,
in-band error)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.sim import anthropic_endpoints, anthropic_wire, endpoints, wire
from gateway.sim.endpoints import Reply
from gateway.sim.faults import Fault

DEFAULT_ERROR_EVENT_MESSAGE = "Overloaded"


@dataclass(frozen=True)
class Framing:
    """The format's bytes that a stream's delivery adds around or instead of its events."""

    done: bytes  # after the events of a complete stream: [DONE] or message_stop
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


def framing(fmt: str, fault: Fault) -> Framing:
    """The framing for a response of format ``fmt`` shaped by ``fault``."""
    base = ANTHROPIC_FRAMING if fmt == "anthropic" else OPENAI_FRAMING
    if fault.mode != "error_event" or fault.message is None:
        return base
    build = anthropic_wire.error_event if fmt == "anthropic" else wire.error_event
    return Framing(base.done, base.malformed_event, base.malformed_body, build(fault.message))


def error_reply(fmt: str, status: int, message: str, code: str | None = None) -> Reply:
    """An error body in format ``fmt`` (Anthropic's has no ``code``)."""
    if fmt == "anthropic":
        return anthropic_endpoints.error_reply(status, message)
    return endpoints.error_reply(status, message, code=code)


def auth_error(fmt: str, headers: Mapping[str, str], api_key: str) -> Reply | None:
    """The 401 for a request without the right key, or None when it may pass. OpenAI wants
    ``Authorization: Bearer KEY``; Anthropic ``x-api-key: KEY`` or, as the ``anthropic`` 2.x SDK
    sends its ``api_key``, ``Authorization: Bearer KEY``."""
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
