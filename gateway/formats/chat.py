"""One model of a chat exchange, whatever the wire format: what every codec decodes into and
encodes from when a request crosses formats (same-format traffic never comes here: it is
passed through byte for byte).

A request keeps what the client asked for that has a place here; what has none is named in
`ChatRequest.dropped` (the `x-turnout-translation` header says so), never silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Role = Literal["user", "assistant"]
Finish = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    """A base64 image (`data`, `media_type`) or one to fetch (`url`)."""

    url: str = ""
    data: str = ""
    media_type: str = ""


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A call the model made: `arguments` is the JSON text of its input, as the model wrote it;
    `signature`: Gemini's `thoughtSignature` bound to the call, which Gemini wants back with it
    (sent to Gemini only)."""

    id: str
    name: str
    arguments: str
    signature: str = ""


@dataclass(frozen=True, slots=True)
class ToolResult:
    tool_use_id: str
    content: tuple[Text | Image, ...]
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Thinking:
    """Reasoning a model showed; `signature` is its vendor's, valid only with that vendor."""

    text: str
    signature: str = ""
    vendor: str = ""


Part = Text | Image | ToolUse | ToolResult | Thinking


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool = False  # the arguments must match `schema` exactly (OpenAI's strict mode)


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str = ""  # mode "tool": which
    parallel: bool = True  # may the model call several tools at once


def number(value: Any) -> float | None:
    """A sampling parameter as the model keeps it: a JSON number (never a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """JSON mode: any JSON object (`schema` None), or JSON that matches `schema`."""

    schema: dict[str, Any] | None = None
    name: str = ""
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    system: tuple[Text, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1  # answers wanted (choices)
    presence_penalty: float | None = None  # None: not set, or the neutral 0
    frequency_penalty: float | None = None
    response_format: ResponseFormat | None = None  # None: text
    stream: bool = False
    include_usage: bool = False  # a stream ends with the usage (OpenAI's stream_options)
    user: str = ""
    dropped: frozenset[str] = frozenset()  # the client's fields this model has no place for


def uncarried(req: ChatRequest, carried: frozenset[str]) -> set[str]:
    """The fields not every wire format can carry (`seed`, `n`, the penalties,
    `response_format`, by the client's names) that `req` sets to other than their neutral
    value, less those in `carried`."""
    set_ = {
        "seed": req.seed is not None,
        "n": req.n > 1,
        "presence_penalty": req.presence_penalty is not None,
        "frequency_penalty": req.frequency_penalty is not None,
        "response_format": req.response_format is not None,
    }
    return {name for name, on in set_.items() if on and name not in carried}


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0  # cached ones included
    output_tokens: int = 0
    cached_tokens: int = 0  # of the input, read from a prompt cache

    def over(self, later: Usage | None) -> Usage:
        """The counts so far, with `later` read over them: each the larger (a stream tells
        its usage in pieces, each event the counts up to it)."""
        if later is None:
            return self
        return Usage(
            max(self.input_tokens, later.input_tokens),
            max(self.output_tokens, later.output_tokens),
            max(self.cached_tokens, later.cached_tokens),
        )


@dataclass(frozen=True, slots=True)
class Choice:
    """One more answer to the same request (`n` > 1), after the reply's own."""

    parts: tuple[Part, ...]
    finish: Finish | None


@dataclass(frozen=True, slots=True)
class ChatReply:
    id: str
    model: str
    parts: tuple[Part, ...]
    finish: Finish | None
    usage: Usage | None = None
    dropped: frozenset[str] = frozenset()  # what the answer carried that the client's format cannot
    others: tuple[Choice, ...] = ()  # the further answers, when `n` > 1 asked for them


# -- a stream, as events in the model's terms ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    id: str
    model: str
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolStarted:
    index: int  # the call's position among this answer's tool calls
    id: str
    name: str
    signature: str = ""  # as `ToolUse.signature`


@dataclass(frozen=True, slots=True)
class ToolArguments:
    index: int
    json: str  # a piece of the arguments' JSON text


@dataclass(frozen=True, slots=True)
class Finished:
    finish: Finish | None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Ended:
    """The stream is complete (its last event)."""

    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider reported an error in the stream. `kind` is in the model's vocabulary of
    errors (`ERROR_KINDS`)."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An event that could not be read (bad JSON): the relay's malformed-event rules apply."""


# The kinds of error the codecs decode a provider's into (Anthropic's error types, which name
# them well); the client's codec says each in its own way (`openai_chat.error_body`).
ERROR_KINDS = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
    }
)

Event = Started | TextDelta | ToolStarted | ToolArguments | Finished | Ended | Failed | Unreadable


_ID_PREFIXES = ("chatcmpl-", "msg_", "resp_")  # OpenAI's, Anthropic's, the Responses API's


def own_id(upstream_id: str, prefix: str) -> str:
    """An answer's id in the client's format (`msg_...`, `resp_...`): the upstream's with its
    format's prefix swapped, so a support ticket can still name it."""
    for known in _ID_PREFIXES:
        if upstream_id.startswith(known):
            return prefix + upstream_id[len(known) :]
    return prefix + upstream_id


def json_object(data: bytes) -> dict[str, Any] | None:
    """`data` as a JSON object; None when it is not JSON or not an object (a stream decoder
    reads that as `Unreadable`)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def error_fields(body: bytes, *, bare_message: bool = False) -> tuple[str, str]:
    """(type, message) of an `{"error": {"type", "message"}}` body - Anthropic's shape and
    OpenAI's; with `bare_message`, OpenAI's `{"error": "message"}` too. ("", "") when it is
    not one."""
    obj = json_object(body)
    err = obj.get("error") if obj is not None else None
    if bare_message and isinstance(err, str):
        return "", err
    if not isinstance(err, dict):
        return "", ""
    return str(err.get("type") or ""), str(err.get("message") or "")
