"""Continuing a committed stream on another target: what the client already has, and the seam.

When a stream fails after output has started, the answer can still be completed elsewhere
(`gateway.pipeline.continuation`): a target that supports prefill gets the request with the
text delivered so far as a final assistant message and continues it; any other is asked for
the whole answer again, and only what follows the delivered text is relayed — if the new
answer begins with exactly that text. The seam makes the continuation's events look like
the rest of the client's stream (its `id`), drops what the client already has, and notices
when a regenerated answer diverges. Nothing is duplicated or dropped at the seam.

Only a plain text answer is continued: one choice, text deltas only. A stream that carried
tool calls, a refusal, reasoning or audio, or several choices, is not (`delivered` is None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.upstream.sse import Kind, inspect
from policies.features import CHARS_PER_TOKEN

# Delta keys a continuation can carry on: text, and the role announcement.
_TEXT_ONLY = frozenset({"role", "content"})


@dataclass(frozen=True, slots=True)
class Delivered:
    """The answer as far as the client has it."""

    text: str
    id: str  # the stream's chunk id, kept on the continuation's chunks


def delivered(events: list[bytes]) -> Delivered | None:
    """What the client's stream carried so far (raw data events, in order), or None if it
    cannot be continued."""
    parts: list[str] = []
    stream_id = ""
    for raw in events:
        info = inspect(raw)
        if info.kind is not Kind.DATA:
            continue
        obj = info.payload
        stream_id = stream_id or str(obj.get("id") or "")
        choices = obj.get("choices") or []
        if len(choices) > 1:
            return None
        for ch in choices:
            if ch.get("index", 0) != 0:
                return None
            delta = ch.get("delta")
            if not isinstance(delta, dict):
                return None  # a completion (text), not a chat stream
            if any(v for k, v in delta.items() if k not in _TEXT_ONLY):
                return None  # tool calls, refusal, reasoning, audio: not continued
            text = delta.get("content")
            if isinstance(text, str):
                parts.append(text)
            if ch.get("finish_reason"):
                return None  # it had finished: nothing to continue
    return Delivered("".join(parts), stream_id)


class Diverged(Exception):
    """The regenerated answer does not begin with the text the client already has."""


class Seam:
    """Rewrites a continuation's events for the client's stream.

    `regenerate`: the target answers from scratch; its text is matched against what was
    delivered and only what follows is sent. Otherwise (prefill) its text is the continuation,
    less the whitespace the delivered text ended with if it begins with it (the prefill was
    sent without it: `gateway.pipeline.continuation.prefill_body`).
    A usage chunk is made to cover the `cuts` earlier, failed attempts too (they were billed):
    their tokens are estimated and the estimate is named in `usage.turnout_estimated`.
    """

    __slots__ = ("_cuts", "_delivered_chars", "_id", "_pending", "_prefill", "joined")

    def __init__(self, delivered: Delivered, *, regenerate: bool, cuts: int = 1) -> None:
        self._id = delivered.id
        text = delivered.text
        self._pending = text if regenerate else text[len(text.rstrip()) :]
        self._prefill = not regenerate
        self._delivered_chars = len(delivered.text)
        self._cuts = cuts
        self.joined = not self._pending  # the continuation's own text has begun

    def rewrite(self, payload: dict[str, Any]) -> bytes | None:
        """The event to send for `payload` (None: nothing to send). Raises Diverged."""
        choices = payload.get("choices") or []
        ch = choices[0] if choices and isinstance(choices[0], dict) else None
        delta = ch.get("delta") if ch is not None else None
        text = delta.get("content") if isinstance(delta, dict) else None
        finished = ch is not None and bool(ch.get("finish_reason"))
        if self._pending:
            if not isinstance(text, str) or not text:
                if finished and self._prefill:  # it ended there: nothing more to say
                    self._pending = ""
                    self.joined = True
                    return self._event(payload)
                if finished:
                    raise Diverged("the new answer ended before the delivered text")
                if payload.get("usage") and not choices:
                    return self._event(payload)
                return None  # the role announcement, empty chunks: the client has them
            n = min(len(text), len(self._pending))
            if text[:n] != self._pending[:n]:
                if not self._prefill:
                    raise Diverged("the new answer differs from the delivered text")
                n, self._pending = 0, ""  # it went on otherwise: all of it is new
            self._pending = self._pending[n:]
            rest = text[n:]
            if self._pending or (not rest and not finished):
                return None
            assert isinstance(delta, dict)
            delta["content"] = rest
            self.joined = True
        elif isinstance(delta, dict) and not text and not finished and set(delta) <= _TEXT_ONLY:
            return None  # a second role announcement mid-stream: nothing for the client
        else:
            self.joined = True
        return self._event(payload)

    def _event(self, payload: dict[str, Any]) -> bytes:
        if self._id:
            payload["id"] = self._id
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._bill_earlier(usage)
        return b"data: " + orjson.dumps(payload)

    def _bill_earlier(self, usage: dict[str, Any]) -> None:
        """Add the failed attempts' tokens to this one's usage: each was sent the prompt (a
        prefill continuation's prompt holds the delivered text too) and together they
        generated at least the delivered text."""
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return
        delivered = math.ceil(self._delivered_chars / CHARS_PER_TOKEN)
        first_prompt = max(0, prompt - delivered) if self._prefill else prompt
        extra_prompt, extra_completion = self._cuts * first_prompt, delivered
        usage["prompt_tokens"] = prompt + extra_prompt
        usage["completion_tokens"] = completion + extra_completion
        if isinstance(usage.get("total_tokens"), int):
            usage["total_tokens"] += extra_prompt + extra_completion
        usage["turnout_estimated"] = {
            "prompt_tokens": extra_prompt,
            "completion_tokens": extra_completion,
            "failed_attempts": self._cuts,
        }
