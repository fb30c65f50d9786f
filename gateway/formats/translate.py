"""A request crossing wire formats: what the attempt sends, and what it makes of the answer.

Same-format traffic never gets here (`translation` returns None): it is passed through byte
for byte, prompt-cache prefixes and all. Across formats the request is decoded into the chat
model once (by the client's format, `CLIENTS`) and encoded for the target's (`CODECS`); the
answer, its stream (event by event: no buffering) and its errors are decoded from the
target's format and encoded back in the client's, so everything after the attempt (commit
point, relay, continuation, usage) keeps seeing the client's format.

    client      target       CLIENTS[client]     CODECS[target]
    openai      anthropic    openai_chat,        anthropic_messages
                gemini       openai_events       gemini_generate, gemini_response
    anthropic   openai       anthropic_ingress,  openai_upstream
                gemini       anthropic_events    gemini_generate, gemini_response
    responses   openai       responses_ingress,  openai_upstream
                anthropic    responses_events    anthropic_messages
                gemini                           gemini_generate, gemini_response

A Responses client is translated for every target (an OpenAI-format target speaks Chat
Completions). A pair missing here (none, today, among these formats) is set aside by routing
(`unfit`), and `translation` refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.formats import (
    anthropic_events,
    anthropic_ingress,
    chat,
    gemini_generate,
    gemini_response,
    openai_chat,
    openai_events,
    openai_upstream,
    responses_events,
    responses_ingress,
)
from gateway.formats import anthropic_messages as anthropic
from gateway.upstream.sse import SseSplitter
from health.outcome import context_exceeded

OPENAI, ANTHROPIC, GEMINI, RESPONSES = "openai", "anthropic", "gemini", "responses"
HEADER = "x-turnout-translation"
_PLAIN = re.compile(r"[A-Za-z0-9_.\-]{1,48}")
_NAMED = 12


class Splitter(Protocol):
    """What the attempt and the relay read a stream with (`gateway.upstream.sse.SseSplitter`,
    or `_Translating` across formats)."""

    def feed(self, chunk: bytes) -> list[bytes]: ...

    def end(self) -> list[bytes]:
        """The events that complete the client's stream when the upstream closed it after
        its finish but without its own last event ([]: the client dialect's `done` does)."""
        ...

    def failed(self, message: str, code: str) -> bytes | None:
        """The in-band error that ends the client's stream, blank line included (None: the
        client dialect's `error_event` says it)."""
        ...


class StreamDecoder(Protocol):
    """A provider format's stream events (their `data`) as events in the chat model's terms."""

    def decode(self, data: bytes) -> list[chat.Event]: ...


class StreamEncoder(Protocol):
    """Events in the chat model's terms as the client's stream events (without the blank line
    that ends an event: the relay adds it)."""

    def encode(self, event: chat.Event) -> list[bytes]: ...

    def failed(self, message: str, code: str) -> bytes | None:
        """Its own in-band error, when the stream so far is part of it (None: the dialect's)."""
        ...


def _as_sent(status: int, retry_after: str | None, body: bytes) -> tuple[int, str | None]:
    return status, retry_after


@dataclass(frozen=True, slots=True)
class Codec:
    """A provider's wire format, as the far side of a translation from the client's."""

    encode: Callable[[chat.ChatRequest, str], tuple[dict[str, Any], frozenset[str]]]
    path: Callable[[str, bool], str]  # (model, stream) -> the endpoint under base_url
    decode_reply: Callable[[Any], chat.ChatReply | None]
    error_of: Callable[[bytes], tuple[str, str]]  # an error body -> (kind, message)
    decoder: Callable[[], StreamDecoder]
    # An error response in HTTP's terms (status, Retry-After), where the format says it in
    # the body: what `health.outcome.classify_status` is given.
    evidence: Callable[[int, str | None, bytes], tuple[int, str | None]] = _as_sent


CODECS: Mapping[str, Codec] = {
    ANTHROPIC: Codec(
        anthropic.encode_request,
        lambda model, stream: anthropic.PATH,
        anthropic.decode_reply,
        anthropic.error_of,
        anthropic.StreamDecoder,
    ),
    GEMINI: Codec(
        gemini_generate.encode_request,
        gemini_generate.path,
        gemini_response.decode_reply,
        gemini_response.error_of,
        gemini_response.StreamDecoder,
        gemini_response.evidence,
    ),
    OPENAI: Codec(
        openai_upstream.encode_request,
        lambda model, stream: openai_upstream.PATH,
        openai_upstream.decode_reply,
        openai_upstream.error_of,
        openai_upstream.StreamDecoder,
    ),
}


@dataclass(frozen=True, slots=True)
class Client:
    """A client's wire format, as the near side of a translation: its request read into the
    chat model, and the answer, the stream and the errors said back in it."""

    decode: Callable[[dict[str, Any]], chat.ChatRequest]
    # (the answer, the target's model: what an answer that names none is from)
    encode_reply: Callable[[chat.ChatReply, str], dict[str, Any]]
    # (status, kind, message, the provider's error body) -> the client's error body
    error_body: Callable[[int, str, str, bytes], bytes]
    encoder: Callable[[bool, str], StreamEncoder]  # (include_usage, model)
    targets: frozenset[str]  # the provider formats (`CODECS`) it is translated to


def _openai_error(status: int, kind: str, message: str, body: bytes) -> bytes:
    """OpenAI's shape, with its `context_length_exceeded` where the provider said as much."""
    return openai_chat.error_body(status, kind, message, context=context_exceeded(status, body))


def _anthropic_error(status: int, kind: str, message: str, body: bytes) -> bytes:
    return anthropic_ingress.error_body(status, message)  # its type follows from the status


def _responses_error(status: int, kind: str, message: str, body: bytes) -> bytes:
    context = context_exceeded(status, body)
    return responses_ingress.error_body(status, kind, message, context=context)


CLIENTS: Mapping[str, Client] = {
    OPENAI: Client(
        openai_chat.decode_request,
        openai_chat.encode_reply,
        _openai_error,
        openai_events.StreamEncoder,
        frozenset({ANTHROPIC, GEMINI}),
    ),
    ANTHROPIC: Client(
        anthropic_ingress.decode_request,
        anthropic_ingress.encode_reply,
        _anthropic_error,
        lambda include_usage, model: anthropic_events.StreamEncoder(model),  # usage: always
        frozenset({OPENAI, GEMINI}),
    ),
    RESPONSES: Client(
        responses_ingress.decode_request,
        responses_ingress.encode_reply,
        _responses_error,
        lambda include_usage, model: responses_events.StreamEncoder(model),  # usage: always
        frozenset({OPENAI, ANTHROPIC, GEMINI}),
    ),
}


def named(dropped: frozenset[str]) -> str:
    """`a,b,+3 more`: the plain names among `dropped` (they come from the client's keys), at
    most `_NAMED` of them - a header or an error message is no place for whatever was sent."""
    plain = sorted(d for d in dropped if _PLAIN.fullmatch(d))[:_NAMED]
    more = len(dropped) - len(plain)
    return ",".join([*plain, f"+{more} more"] if more else plain)


def crosses(source: str, fmt: str) -> bool:
    """Is there a translation from a client of format `source` to a target of `fmt`?"""
    client = CLIENTS.get(source)
    return client is not None and fmt in client.targets


def serves(operation: str, fmt: str, source: str = OPENAI) -> bool:
    """Can a target of wire format `fmt` serve `operation` for a client of format `source`?"""
    return fmt == source or (operation == "chat" and crosses(source, fmt))


def unfit(
    payload: Mapping[str, Any],
    operation: str,
    fmt: str,
    model: str,
    *,
    strict: bool,
    source: str = OPENAI,
) -> str | None:
    """Why a target of format `fmt` may not take this request from a client of format
    `source` (None: it may): there is no translation between the two, its format cannot
    carry the operation, or - with `translation: strict` - not without a loss."""
    if fmt != source and not crosses(source, fmt):
        return f"no translation from {source} to a {fmt} target (not supported yet)"
    if not serves(operation, fmt, source):
        return f"a {fmt} target serves chat only"
    if strict:
        tr = translation(payload, operation, fmt, model, source)
        if tr is not None and tr.dropped:
            return f"lossy translation to {fmt}: would drop {named(tr.dropped)}"
    return None


@dataclass(frozen=True, slots=True)
class Translation:
    """One attempt's request in the target's format, and the way back."""

    source: str
    target: str
    path: str
    body: dict[str, Any]
    dropped: frozenset[str]
    include_usage: bool
    codec: Codec  # the target's format
    model: str  # the target's model: what an answer that names none is from
    client: Client  # the client's format (`source`)

    @property
    def note(self) -> str:
        """The `x-turnout-translation` value: `openai->anthropic`, `; lossy; dropped=a,b`.
        Dropped names come from the client's keys: only plain ones are named, at most
        `_NAMED` of them (a header is no place for whatever a client sent)."""
        head = f"{self.source}->{self.target}"
        return f"{head}; lossy; dropped={named(self.dropped)}" if self.dropped else head

    def reply(self, body: bytes) -> bytes | None:
        """A non-streaming answer in the client's format; None when it is not an answer."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        reply = self.codec.decode_reply(obj)
        if reply is None:
            return None
        return orjson.dumps(self.client.encode_reply(reply, self.model))

    def error(self, status: int, body: bytes) -> bytes:
        """A provider's error body (passed through to the client) in the client's format."""
        kind, message = self.codec.error_of(body)
        return self.client.error_body(status, kind, message or f"upstream error {status}", body)

    def evidence(self, status: int, retry_after: str | None, body: bytes) -> tuple[int, str | None]:
        """An error response's status and Retry-After as `classify_status` should read them."""
        return self.codec.evidence(status, retry_after, body)

    def splitter(self) -> Splitter:
        encoder = self.client.encoder(self.include_usage, self.model)
        return _Translating(self.codec.decoder(), encoder)


def translation(
    payload: Mapping[str, Any],
    operation: str,
    target_format: str,
    model: str,
    source: str = OPENAI,
    max_tokens_field: str = "max_tokens",
) -> Translation | None:
    """How a request in the client's format (`source`) reaches a target of `target_format`;
    None: as it is. A ValueError for a pair with no translation (`crosses`), or an
    operation other than chat. `max_tokens_field`: the provider's
    (`providers.*.max_tokens_field`), for an OpenAI-format target."""
    if target_format == source:
        return None
    if not crosses(source, target_format):
        raise ValueError(f"no translation from {source} to a {target_format} target yet")
    if operation != "chat":
        raise ValueError(f"{operation} cannot be sent to a {target_format} target")
    client, codec = CLIENTS[source], CODECS[target_format]
    req = client.decode(dict(payload))
    body, dropped = codec.encode(req, model)
    if target_format == OPENAI and max_tokens_field != "max_tokens" and "max_tokens" in body:
        body[max_tokens_field] = body.pop("max_tokens")  # OpenAI's reasoning models want it
    path = codec.path(model, req.stream)
    return Translation(
        source, target_format, path, body, dropped, req.include_usage, codec, model, client
    )


def _data_of(raw: bytes) -> bytes | None:
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            return value[1:] if value.startswith(b" ") else value
    return None


class _Translating:
    """Splits the target's stream into events and gives back the client's events for them."""

    __slots__ = ("_decoder", "_encoder", "_finished", "_sse")

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder) -> None:
        self._sse = SseSplitter()
        self._decoder = decoder
        self._encoder = encoder
        self._finished = False  # the target's stream said the model finished

    def _events(self, raws: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for raw in raws:
            data = _data_of(raw)
            if data is None:
                continue  # a comment or a bare `event:` line: nothing to relay
            for event in self._decoder.decode(data):
                if isinstance(event, chat.Finished) and event.finish is not None:
                    self._finished = True
                out.extend(self._encoder.encode(event))
        return out

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._events(self._sse.feed(chunk))

    def end(self) -> list[bytes]:
        """The client's last events, said by its encoder (the response so far, its usage)."""
        return self._encoder.encode(chat.Ended()) if self._finished else []

    def failed(self, message: str, code: str) -> bytes | None:
        """The encoder's own error event where it has one (a Responses stream's
        `response.failed` carries the response as far as it got)."""
        event = self._encoder.failed(message, code)
        return None if event is None else event + b"\n\n"
