"""Stream events in the chat model's terms as OpenAI chunk events, for an OpenAI client served
by a target of another format (`data: ...`, without the blank line that ends an event: the
relay adds it).

    Started          the role chunk (preamble, not output)
    TextDelta        a content chunk (its fixed parts serialised once per stream)
    ToolStarted      a tool_calls chunk: the call's id, name (and Gemini's signature)
    ToolArguments    a tool_calls chunk: a piece of its arguments
    Finished         the finish chunk
    Ended            the usage chunk (with stream_options.include_usage), `data: [DONE]`
    Failed           an error chunk, in OpenAI's error shape
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.formats import chat
from gateway.formats.openai_chat import call, error_body, usage

_TEXT_TAIL = b'},"logprobs":null,"finish_reason":null}]}'


class StreamEncoder:
    def __init__(self, include_usage: bool, model: str = "") -> None:
        self.include_usage = include_usage
        self.id = ""
        self.model = model  # the one asked for, until the stream names the one answering
        self.created = int(time.time())
        self.usage = chat.Usage()
        self._text_head: bytes | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(chunk)

    def _text_chunk(self, text: str) -> bytes:
        """A content chunk, the most frequent event by far: its fixed parts serialised once."""
        if self._text_head is None:
            head = orjson.dumps({"id": self.id, "object": "chat.completion.chunk"})[:-1]
            rest = orjson.dumps({"created": self.created, "model": self.model})[1:-1]
            self._text_head = (
                b"data: " + head + b"," + rest + b',"choices":[{"index":0,"delta":{"content":'
            )
        return self._text_head + orjson.dumps(text) + _TEXT_TAIL

    def encode(self, event: chat.Event) -> list[bytes]:
        if isinstance(event, chat.TextDelta):
            return [self._text_chunk(event.text)] if event.text else []
        if isinstance(event, chat.ToolArguments):
            fn = {"arguments": event.json}
            return [self._chunk({"tool_calls": [{"index": event.index, "function": fn}]})]
        if isinstance(event, chat.ToolStarted):
            started = call(chat.ToolUse(event.id, event.name, "", event.signature))
            return [self._chunk({"tool_calls": [{"index": event.index, **started}]})]
        if isinstance(event, chat.Started):
            self.id, self.model = chat.own_id(event.id, "chatcmpl-"), event.model or self.model
            self._text_head = None
            self._add(event.usage)
            return [self._chunk({"role": "assistant", "content": ""})]  # preamble, not output
        if isinstance(event, chat.Finished):
            self._add(event.usage)
            return [self._chunk({}, event.finish or "stop")]
        if isinstance(event, chat.Ended):
            self._add(event.usage)
            out = []
            if self.include_usage:
                last = {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage(self.usage),
                }
                out.append(b"data: " + orjson.dumps(last))
            return [*out, b"data: [DONE]"]
        if isinstance(event, chat.Failed):
            return [b"data: " + error_body(500, event.kind, event.message)]
        return [b"data: {"]  # Unreadable: malformed for the relay, as the original was

    def failed(self, message: str, code: str) -> bytes | None:
        return None  # the dialect's error event says it: nothing of the stream so far is in it

    def _add(self, usage: chat.Usage | None) -> None:
        self.usage = self.usage.over(usage)
