"""Stream events in the chat model's terms as a Messages API stream, for an Anthropic client
served by a target of another format: event by event, nothing held back but the final
`message_delta`, which waits for the usage that follows the finish (one event later).

    Started          message_start (preamble: usage so far, no content)
    TextDelta        [content_block_stop] content_block_start text "" + text_delta
    ToolStarted      [content_block_stop] content_block_start tool_use (id, name, input {})
    ToolArguments    input_json_delta on that call's block
    Finished         content_block_stop; message_delta once the usage is known
    Ended            message_delta (if not sent yet), message_stop
    Failed           event: error
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.formats import chat
from gateway.formats.anthropic_ingress import STOP_REASON, error_body, usage


def event(kind: str, data: dict[str, Any]) -> bytes:
    """One event (`event:` and `data:` lines, without the blank line: the relay adds it)."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data})


class StreamEncoder:
    def __init__(self, model: str = "") -> None:
        self.id = ""
        self.model = model  # the one asked for, until the stream names the one answering
        self.usage = chat.Usage()
        self._started = False
        self._open = -1  # the open content block's index, -1: none
        self._text = False  # the open block is a text block
        self._blocks = 0  # blocks opened so far
        self._tools: dict[int, int] = {}  # tool call index -> its block's index
        self._stop: str | None = None  # the stop reason, once the model finished
        self._delta_sent = False

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage(self.usage),
        }
        return [event("message_start", {"message": message})]

    def _close(self) -> list[bytes]:
        if self._open < 0:
            return []
        index, self._open, self._text = self._open, -1, False
        return [event("content_block_stop", {"index": index})]

    def _open_block(self, block: dict[str, Any]) -> list[bytes]:
        out = [*self._start(), *self._close()]
        self._open = self._blocks
        self._blocks += 1
        return [*out, event("content_block_start", {"index": self._open, "content_block": block})]

    def _message_delta(self) -> list[bytes]:
        if self._delta_sent:
            return []
        self._delta_sent = True
        delta = {"stop_reason": self._stop or "end_turn", "stop_sequence": None}
        return [event("message_delta", {"delta": delta, "usage": usage(self.usage)})]

    def encode(self, ev: chat.Event) -> list[bytes]:
        if isinstance(ev, chat.TextDelta):
            if not ev.text:
                return []
            out = [] if self._text else self._open_block({"type": "text", "text": ""})
            self._text = True
            delta = {"type": "text_delta", "text": ev.text}
            return [*out, event("content_block_delta", {"index": self._open, "delta": delta})]
        if isinstance(ev, chat.ToolArguments):
            block = self._tools.get(ev.index)
            if block is None or not ev.json:
                return []
            delta = {"type": "input_json_delta", "partial_json": ev.json}
            return [event("content_block_delta", {"index": block, "delta": delta})]
        if isinstance(ev, chat.ToolStarted):
            call = {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}}
            out = self._open_block(call)
            self._tools[ev.index] = self._open
            return out
        if isinstance(ev, chat.Started):
            self.id, self.model = chat.own_id(ev.id, "msg_"), ev.model or self.model
            self._add(ev.usage)
            return self._start()
        if isinstance(ev, chat.Finished):
            self._add(ev.usage)
            out = []
            if ev.finish is not None:
                out = [*self._start(), *self._close()]
                self._stop = STOP_REASON.get(ev.finish, "end_turn")
            if ev.usage is not None and self._stop is not None:
                out.extend(self._message_delta())
            return out
        if isinstance(ev, chat.Ended):
            self._add(ev.usage)
            out = [*self._start(), *self._close(), *self._message_delta()]
            return [*out, event("message_stop", {})]
        if isinstance(ev, chat.Failed):
            return [b"event: error\ndata: " + error_body(500, ev.message or ev.kind)]
        return [b"data: {"]  # Unreadable: malformed for the relay, as the original was

    def failed(self, message: str, code: str) -> bytes | None:
        return None  # the dialect's error event says it: nothing of the stream so far is in it

    def _add(self, u: chat.Usage | None) -> None:
        self.usage = self.usage.over(u)
