"""Stream events in the chat model's terms as a Responses API stream, for a Responses client
served by a target of any format: event by event, every one numbered (`sequence_number`).
The text and arguments are kept as they pass, for the `.done` events and the whole
`response` the last event carries.

    Started          response.created, response.in_progress (preamble: no output yet)
    TextDelta        [item done] output_item.added message + content_part.added, then
                     output_text.delta
    ToolStarted      [message done] output_item.added function_call (call_id, name; a
                     Gemini signature as extra_content.google.thought_signature)
    ToolArguments    function_call_arguments.delta on that call's item
    Finished         the open items done (output_text.done, content_part.done,
                     output_item.done; function_call_arguments.done, output_item.done)
    Ended            response.completed (response.incomplete: cut at max_output_tokens, or
                     filtered), with every output item and the usage (none, if the target
                     sent none: the gateway then estimates it, as for any stream)
    Failed           response.failed (status failed, the error)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.formats import chat
from gateway.formats import responses_ingress as r


def event(kind: str, data: dict[str, Any]) -> bytes:
    """One event (`event:` and `data:` lines, without the blank line: the relay adds it)."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data})


@dataclass(slots=True)
class _Item:
    index: int  # its output_index
    id: str
    call: tuple[str, str, str] | None = None  # a function call's (call_id, name, signature)
    pieces: list[str] = field(default_factory=list)  # the text, or the arguments' JSON text
    done: bool = False


class StreamEncoder:
    """One Responses stream. A message item is done when anything else begins; function
    calls stay open until the text resumes or the model finishes (a server may interleave
    several calls' arguments), and are done together, in order."""

    def __init__(self, model: str = "") -> None:
        self.id = r.response_id("")
        self.model = model  # the one asked for, until the stream names the one answering
        self.created = int(time.time())
        self.usage = chat.Usage()
        self._counted = False  # some usage came: without any, the response names none
        self._seq = 0
        self._started = False
        self._items: list[_Item] = []
        self._text: _Item | None = None  # the open message item
        self._calls: dict[int, _Item] = {}  # tool call index -> its item
        self._finish: chat.Finish | None = None

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        out = event(kind, {**data, "sequence_number": self._seq})
        self._seq += 1
        return out

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        output = [self._whole(item) for item in self._items]
        return r.response(self.id, self.model, output, status, created=self.created, **extra)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        running = {"response": self._response("in_progress")}
        return [
            self._event("response.created", running),
            self._event("response.in_progress", running),
        ]

    def _whole(self, item: _Item) -> dict[str, Any]:
        status = "completed" if item.done else "in_progress"
        text = "".join(item.pieces)
        if item.call is None:
            return {**r.message_item(self.id, text, status), "id": item.id}
        call_id, name, signature = item.call
        return r.call_item(call_id, name, text, status, signature)

    def _add(self, call: tuple[str, str, str] | None) -> tuple[list[bytes], _Item]:
        out = [*self._start(), *self._close_text()]
        if call is None:
            out += self._close_calls()
        index = len(self._items)
        item_id = f"msg_{self.id[len('resp_') :]}_{index}" if call is None else "fc_" + call[0]
        item = _Item(index, item_id, call)
        self._items.append(item)
        added = {"output_index": index, "item": self._whole(item)}
        out.append(self._event("response.output_item.added", added))
        if call is None:
            self._text = item
            at = {"item_id": item.id, "output_index": index, "content_index": 0}
            out.append(self._event("response.content_part.added", {**at, "part": r.text_part("")}))
        return out, item

    def _close_text(self) -> list[bytes]:
        item, self._text = self._text, None
        if item is None:
            return []
        item.done = True
        whole = "".join(item.pieces)
        at = {"item_id": item.id, "output_index": item.index, "content_index": 0}
        return [
            self._event("response.output_text.done", {**at, "text": whole, "logprobs": []}),
            self._event("response.content_part.done", {**at, "part": r.text_part(whole)}),
            self._event(
                "response.output_item.done", {"output_index": item.index, "item": self._whole(item)}
            ),
        ]

    def _close_calls(self) -> list[bytes]:
        out: list[bytes] = []
        for item in self._items:
            if item.call is None or item.done:
                continue
            item.done = True
            at = {"item_id": item.id, "output_index": item.index}
            args = "".join(item.pieces)
            out.append(
                self._event("response.function_call_arguments.done", {**at, "arguments": args})
            )
            out.append(
                self._event(
                    "response.output_item.done",
                    {"output_index": item.index, "item": self._whole(item)},
                )
            )
        return out

    def _close(self) -> list[bytes]:
        return [*self._close_text(), *self._close_calls()]

    def encode(self, ev: chat.Event) -> list[bytes]:
        if isinstance(ev, chat.TextDelta):
            if not ev.text:
                return []
            out: list[bytes] = []
            item = self._text
            if item is None:
                out, item = self._add(None)
            item.pieces.append(ev.text)
            at = {"item_id": item.id, "output_index": item.index, "content_index": 0}
            delta = {**at, "delta": ev.text, "logprobs": []}
            return [*out, self._event("response.output_text.delta", delta)]
        if isinstance(ev, chat.ToolArguments):
            call = self._calls.get(ev.index)
            if call is None or call.done or not ev.json:
                return []
            call.pieces.append(ev.json)
            delta = {"item_id": call.id, "output_index": call.index, "delta": ev.json}
            return [self._event("response.function_call_arguments.delta", delta)]
        if isinstance(ev, chat.ToolStarted):
            call_id = ev.id or f"call_{self.id[len('resp_') :]}_{ev.index}"  # none given: ours
            out, self._calls[ev.index] = self._add((call_id, ev.name, ev.signature))
            return out
        if isinstance(ev, chat.Started):
            if not self._started:
                self.id = r.response_id(ev.id)
            self.model = ev.model or self.model
            self._count(ev.usage)
            return self._start()
        if isinstance(ev, chat.Finished):
            self._count(ev.usage)
            if ev.finish is None:
                return []
            self._finish = ev.finish
            return [*self._start(), *self._close()]
        if isinstance(ev, chat.Ended):
            self._count(ev.usage)
            out = [*self._start(), *self._close()]
            status, incomplete = r.status_of(self._finish)
            usage = self.usage if self._counted else None  # none came: the gateway estimates
            whole = self._response(status, usage_=usage, incomplete=incomplete)
            kind = "response.completed" if status == "completed" else "response.incomplete"
            return [*out, self._event(kind, {"response": whole})]
        if isinstance(ev, chat.Failed):
            return [self.failed(ev.message or ev.kind)]
        return [b"data: {"]  # Unreadable: malformed for the relay, as the original was

    def failed(self, message: str, code: str = "server_error") -> bytes:
        """`response.failed`: the response as far as it got, its error named (`code` is one
        of the SDK's `ResponseError` codes; the gateway's own reason goes in `type`)."""
        error = {"code": "server_error", "type": code, "message": message}
        whole = self._response("failed", error=error)
        return self._event("response.failed", {"response": whole})

    def _count(self, u: chat.Usage | None) -> None:
        if u is not None:
            self._counted = True
            self.usage = self.usage.over(u)
