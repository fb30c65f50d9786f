"""A stream dialect: how the events a client reads are classified, completed and ended.

The attempt's commit point and the relay read every event in the *client's* format (a
translated stream is already in it: `gateway.formats.translate`), so the dialect is a
property of the client's format alone:

    openai     chunks; `data: [DONE]` completes; an `error` data event fails; comments skip
    anthropic  `message_start`, `ping`, `content_block_stop` and an empty `content_block_start`
               are preamble; `message_stop` completes; `event: error` fails
    responses  `response.created`, `response.in_progress`, a message's `output_item.added`
               and `content_part.added` are preamble; `response.completed` and
               `response.incomplete` complete (holding the usage); `response.failed` and
               `error` fail
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.formats.responses_events import StreamEncoder
from gateway.telemetry.hub import Usage
from gateway.upstream.sse import EventInfo, Kind, data_of, inspect

OPENAI_DONE = b"data: [DONE]\n\n"
ANTHROPIC_DONE = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
# A Responses stream is always translated, and its encoder writes its own last event
# (`gateway.formats.responses_events`): this bare one is for a stream that somehow is not.
RESPONSES_DONE = b'event: response.completed\ndata: {"type":"response.completed"}\n\n'


def openai_error_event(message: str, code: str) -> bytes:
    err = {"error": {"message": message, "type": "server_error", "code": code, "param": None}}
    return b"event: error\ndata: " + orjson.dumps(err) + b"\n\n"


def anthropic_error_event(message: str, code: str) -> bytes:
    kind = "overloaded_error" if code == "shutting_down" else "api_error"
    err = {"type": "error", "error": {"type": kind, "message": message}}
    return b"event: error\ndata: " + orjson.dumps(err) + b"\n\n"


def responses_error_event(message: str, code: str) -> bytes:
    """`response.failed` of an encoder that said nothing yet (a translated stream's own
    encoder says it with the response so far: `gateway.upstream.relay.ending`)."""
    return StreamEncoder().failed(message, code) + b"\n\n"


def _openai_usage(payload: Any, before: Usage | None) -> Usage | None:
    return Usage.of(payload) or before


def _anthropic_usage(payload: Any, before: Usage | None) -> Usage | None:
    return Usage.of_anthropic(payload, before)


# What in a content block's start or delta is output (an empty text block is not).
_OUTPUT_KEYS = ("text", "partial_json", "thinking", "signature", "citation", "id")


def _carries_output(block: Any) -> bool:
    return isinstance(block, Mapping) and any(block.get(k) for k in _OUTPUT_KEYS)


_COMMENT, _MALFORMED = EventInfo(Kind.COMMENT), EventInfo(Kind.MALFORMED)


def _typed(raw: bytes) -> dict[str, Any] | EventInfo:
    """An event of a stream whose every event is a JSON object with a `type` (Anthropic's,
    the Responses API's): that object, or what the event is instead (a comment, malformed)."""
    data = data_of(raw)
    if data is None:
        return _COMMENT
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _MALFORMED
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return _MALFORMED
    return obj


def inspect_anthropic(raw: bytes) -> EventInfo:
    """Classify one event of a Messages API stream (`anthropic.types.RawMessageStreamEvent`)."""
    obj = _typed(raw)
    if isinstance(obj, EventInfo):
        return obj
    kind = obj["type"]
    if kind == "content_block_delta":
        return EventInfo(Kind.DATA, content=_carries_output(obj.get("delta")), payload=obj)
    if kind == "content_block_start":
        return EventInfo(Kind.DATA, content=_carries_output(obj.get("content_block")), payload=obj)
    if kind == "message_delta":
        delta = obj.get("delta")
        finished = isinstance(delta, Mapping) and bool(delta.get("stop_reason"))
        return EventInfo(Kind.DATA, content=True, finished=finished, payload=obj)
    if kind == "message_stop":
        return EventInfo(Kind.DONE)
    if kind == "error":
        return EventInfo(Kind.ERROR, payload=obj)
    return EventInfo(Kind.DATA, payload=obj)  # message_start, ping, block stops, newer kinds


_RESPONSES_DONE = frozenset({"response.completed", "response.incomplete"})


def inspect_responses(raw: bytes) -> EventInfo:
    """Classify one event of a Responses API stream (`openai.types.responses.
    ResponseStreamEvent`): output is a text or arguments delta, or a function call's start."""
    obj = _typed(raw)
    if isinstance(obj, EventInfo):
        return obj
    kind = obj["type"]
    if kind.endswith(".delta"):
        return EventInfo(Kind.DATA, content=bool(obj.get("delta")), payload=obj)
    if kind == "response.output_item.added":
        item = obj.get("item")
        call = isinstance(item, Mapping) and item.get("type") != "message"
        return EventInfo(Kind.DATA, content=call, payload=obj)
    if kind in _RESPONSES_DONE:  # the model's finish too: an empty answer is an answer
        return EventInfo(Kind.DONE, content=True, finished=True, payload=obj)
    if kind in ("response.failed", "error"):
        return EventInfo(Kind.ERROR, payload=obj)
    return EventInfo(Kind.DATA, payload=obj)  # preamble, parts and items done, newer kinds


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    inspect: Callable[[bytes], EventInfo]
    done: bytes  # what completes a stream that ended after its finish, without its terminator
    error_event: Callable[[str, str], bytes]  # (message, code): the in-band end of a failure
    usage: Callable[[Any, Usage | None], Usage | None]  # an event's payload, the usage so far
    reply_usage: Callable[[Any], Usage | None]  # of a whole (non-streaming) answer
    prelude_usage: bool  # the preamble carries usage (Anthropic's message_start)
    continuable: bool  # a cut stream may be continued (`gateway.pipeline.continuation`)


OPENAI = Dialect(
    "openai", inspect, OPENAI_DONE, openai_error_event, _openai_usage, Usage.of, False, True
)
ANTHROPIC = Dialect(
    "anthropic",
    inspect_anthropic,
    ANTHROPIC_DONE,
    anthropic_error_event,
    _anthropic_usage,
    lambda payload: Usage.of_anthropic(payload, None),
    True,
    False,
)
RESPONSES = Dialect(
    "responses",
    inspect_responses,
    RESPONSES_DONE,
    responses_error_event,
    Usage.of_responses,
    Usage.of_responses,
    False,
    False,
)
DIALECTS = {"openai": OPENAI, "anthropic": ANTHROPIC, "responses": RESPONSES}
