"""Server-sent events: split a byte stream into events and read what the relay needs to know."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import orjson


class SseSplitter:
    """Incrementally splits bytes into complete events (raw bytes, `\\n` line endings)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk
        if b"\r" in buf:
            # Keep a lone trailing \r: its \n may be in the next chunk.
            keep_cr = buf.endswith(b"\r")
            buf = buf[:-1] if keep_cr else buf
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if keep_cr:
                buf += b"\r"
        events = buf.split(b"\n\n")
        self._buf = events.pop()
        return [e for e in events if e]

    def end(self) -> list[bytes]:
        return []  # a stream in the client's own format: its dialect completes it

    def failed(self, message: str, code: str) -> bytes | None:
        return None  # the client dialect's error event says it

    def tail(self) -> bytes:
        """Whatever was left unterminated when the stream ended."""
        rest, self._buf = self._buf.strip(b"\r\n"), b""
        return rest


class Kind(enum.Enum):
    DATA = "data"
    DONE = "done"
    COMMENT = "comment"
    ERROR = "error"
    MALFORMED = "malformed"


class EventInfo(NamedTuple):
    """What one event is. A named tuple, not a frozen dataclass: one is made per event the
    relay reads, and a tuple is built in C."""

    kind: Kind
    content: bool = False  # carries generated output (text, tool call, finish)
    finished: bool = False  # a choice carries a finish_reason
    payload: Any = None


# Anything the model produces is output: text, tool calls, a refusal, reasoning (DeepSeek's
# `reasoning_content`, newer vLLM's `reasoning`) and audio.
_CONTENT_KEYS = (
    "content",
    "tool_calls",
    "function_call",
    "refusal",
    "reasoning_content",
    "reasoning",
    "audio",
)


def data_of(raw: bytes) -> bytes | None:
    if raw[:6] == b"data: " and b"\n" not in raw:  # the usual event: one data line
        return raw[6:]
    parts: list[bytes] = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts) if parts else None


COMMENT_EVENT = EventInfo(Kind.COMMENT)  # the payload-free kinds, made once (they are frozen)
DONE_EVENT = EventInfo(Kind.DONE)
MALFORMED_EVENT = EventInfo(Kind.MALFORMED)


def inspect(raw: bytes) -> EventInfo:
    """Classify one event of an OpenAI-style stream."""
    data = data_of(raw)
    if data is None:
        return COMMENT_EVENT
    if data[:1] != b"{" and data.strip() == b"[DONE]":
        return DONE_EVENT
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return MALFORMED_EVENT
    if not isinstance(obj, dict):
        return MALFORMED_EVENT
    if obj.get("error"):
        return EventInfo(Kind.ERROR, payload=obj)
    choices = obj.get("choices")
    content = finished = False
    if isinstance(choices, list):
        for ch in choices:
            if not isinstance(ch, dict):
                return MALFORMED_EVENT
            if ch.get("finish_reason"):
                content = finished = True
            delta = ch.get("delta")
            if isinstance(delta, dict):
                if not content:
                    for key in _CONTENT_KEYS:  # a loop, not any(): no generator per event
                        if delta.get(key):
                            content = True
                            break
            elif ch.get("text"):
                content = True
    elif choices is not None:
        return MALFORMED_EVENT
    if obj.get("usage") and not choices:
        content = True
    return EventInfo(Kind.DATA, content=content, finished=finished, payload=obj)
