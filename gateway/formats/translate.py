"""A request crossing wire formats: what the attempt sends, and what it makes of the answer.

Same-format traffic never gets here (`translation` returns None): it is passed through byte
for byte, prompt-cache prefixes and all. Across formats the request is decoded into the chat
model once and encoded for the target's format; the answer, its stream (event by event: no
buffering) and its errors are decoded from the target's format and encoded back in the
client's, so everything after the attempt (commit point, relay, continuation, usage) keeps
seeing the client's format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.formats import anthropic_events, anthropic_ingress, chat, openai_chat, openai_upstream
from gateway.formats import anthropic_messages as anthropic
from gateway.upstream.sse import SseSplitter

OPENAI, ANTHROPIC = "openai", "anthropic"
HEADER = "x-turnout-translation"
_PLAIN = re.compile(r"[A-Za-z0-9_.\-]{1,48}")
_NAMED = 12


class Splitter(Protocol):
    """What the attempt and the relay read a stream with (`gateway.upstream.sse.SseSplitter`)."""

    def feed(self, chunk: bytes) -> list[bytes]: ...


class _Decoder(Protocol):
    def decode(self, data: bytes) -> list[chat.Event]: ...


class _Encoder(Protocol):
    def encode(self, event: chat.Event) -> list[bytes]: ...


def named(dropped: frozenset[str]) -> str:
    """`a,b,+3 more`: the plain names among `dropped` (they come from the client's keys), at
    most `_NAMED` of them - a header or an error message is no place for whatever was sent."""
    plain = sorted(d for d in dropped if _PLAIN.fullmatch(d))[:_NAMED]
    more = len(dropped) - len(plain)
    return ",".join([*plain, f"+{more} more"] if more else plain)


def serves(operation: str, fmt: str) -> bool:
    """Can a target of wire format `fmt` serve `operation` for an OpenAI-format client?"""
    return fmt == OPENAI or operation == "chat"


def unfit(
    payload: Mapping[str, Any],
    operation: str,
    fmt: str,
    model: str,
    *,
    strict: bool,
    source: str = OPENAI,
) -> str | None:
    """Why a target of format `fmt` may not take this request (None: it may): its format
    cannot carry the operation, or - with `translation: strict` - not without a loss."""
    if not serves(operation, fmt):
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
        if self.source == ANTHROPIC:  # an Anthropic client, an OpenAI-format target
            back = openai_upstream.decode_reply(obj)
            return None if back is None else orjson.dumps(anthropic_ingress.encode_reply(back))
        reply = anthropic.decode_reply(obj)
        if reply is None:
            return None
        return orjson.dumps(openai_chat.encode_reply(reply))

    def error(self, status: int, body: bytes) -> bytes:
        """A provider's error body (passed through to the client) in the client's format."""
        if self.source == ANTHROPIC:
            _, said = openai_upstream.error_of(body)
            return anthropic_ingress.error_body(status, said or f"upstream error {status}")
        kind, message = anthropic.error_of(body)
        return openai_chat.error_body(status, kind, message or f"upstream error {status}")

    def splitter(self) -> Splitter:
        if self.source == ANTHROPIC:
            return _Translating(openai_upstream.StreamDecoder(), anthropic_events.StreamEncoder())
        return _Translating(
            anthropic.StreamDecoder(), openai_chat.StreamEncoder(self.include_usage)
        )


def translation(
    payload: Mapping[str, Any],
    operation: str,
    target_format: str,
    model: str,
    source: str = OPENAI,
) -> Translation | None:
    """How a request in the client's format (`source`) reaches a target of `target_format`;
    None: as it is."""
    if target_format == source:
        return None
    if source == ANTHROPIC and target_format == OPENAI:  # the Messages ingress
        areq = anthropic_ingress.decode_request(dict(payload))
        abody, lost = openai_upstream.encode_request(areq, model)
        return Translation(ANTHROPIC, OPENAI, openai_upstream.PATH, abody, lost, True)
    if target_format != ANTHROPIC or operation != "chat":
        raise ValueError(f"{operation} cannot be sent to a {target_format} target")
    req = openai_chat.decode_request(dict(payload))
    body, dropped = anthropic.encode_request(req, model)
    return Translation(OPENAI, ANTHROPIC, anthropic.PATH, body, dropped, req.include_usage)


def _data_of(raw: bytes) -> bytes | None:
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            return value[1:] if value.startswith(b" ") else value
    return None


class _Translating:
    """Splits the target's stream into events and gives back the client's events for them."""

    __slots__ = ("_decoder", "_encoder", "_sse")

    def __init__(self, decoder: _Decoder, encoder: _Encoder) -> None:
        self._sse = SseSplitter()
        self._decoder = decoder
        self._encoder = encoder

    def _events(self, raws: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for raw in raws:
            data = _data_of(raw)
            if data is None:
                continue  # a comment or a bare `event:` line: nothing to relay
            for event in self._decoder.decode(data):
                out.extend(self._encoder.encode(event))
        return out

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._events(self._sse.feed(chunk))
