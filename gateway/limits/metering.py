"""Each settled attempt's usage, counted against its client key: tokens, and spend at the
answering target's price (an unpriced target costs nothing). A settlement listener
(`gateway.pipeline.settle`), first of the request's listeners, so the attempt's span is still
open when it is flagged.

Usage is the provider's (`usage` of an answer, a stream's usage chunk; one of all zeros is
none: what a translated Messages stream must say when its target told nothing). A stream
without one, for a key with limits, is estimated (~4 characters a token: the prompt's text and
the text relayed, read in the client's format) and flagged:
`turnout.usage.estimated` on the attempt's span, `estimated="true"` on
`turnout_client_tokens_total`. A stream cut after its first byte whose client asked for
usage is left to the stream that completes it: the continuation's usage chunk bills the cut
attempts too (`gateway.upstream.seam`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from gateway.config.clients import ClientConfig
from gateway.edge.context import CLIENT
from gateway.limits.labels import ClientLabels, labels_of
from gateway.telemetry.hub import Usage
from gateway.upstream.sse import data_of
from health.outcome import Outcome, OutcomeKind
from policies.features import CHARS_PER_TOKEN, turns

if TYPE_CHECKING:
    from gateway.pipeline.exchange import Exchange
    from gateway.pipeline.settle import Listener


def estimate_prompt_tokens(payload: Mapping[str, Any]) -> int:
    chars = 0
    for m in turns(payload):
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, Mapping) else None
                if isinstance(text, str):  # a part's text of another type is no text
                    chars += len(text)
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        chars += len(prompt)
    return math.ceil(chars / CHARS_PER_TOKEN)


def _said(obj: Mapping[str, Any]) -> int:
    """The characters of output one event carries, whichever client format it is in:
    OpenAI's chunks (every choice's `delta.content`, or a completion's `text`), Anthropic's
    `content_block_delta` (`text`, `partial_json`), the Responses API's text and arguments
    deltas."""
    chars = 0
    for ch in obj.get("choices") or ():
        if isinstance(ch, Mapping):
            delta = ch.get("delta")
            text = delta.get("content") if isinstance(delta, Mapping) else ch.get("text")
            if isinstance(text, str):
                chars += len(text)
    kind = obj.get("type")
    if kind == "content_block_delta":
        delta = obj.get("delta")
        if isinstance(delta, Mapping):
            for key in ("text", "partial_json"):
                piece = delta.get(key)
                chars += len(piece) if isinstance(piece, str) else 0
    elif kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
        piece = obj.get("delta")
        chars += len(piece) if isinstance(piece, str) else 0
    return chars


def estimate_output_tokens(events: list[bytes]) -> int:
    """From relayed data events, in the client's format (`_said`)."""
    chars = 0
    for raw in events:
        data = data_of(raw)
        if data is None:
            continue
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, Mapping):
            chars += _said(obj)
    return math.ceil(chars / CHARS_PER_TOKEN)


def _asks_usage(payload: Mapping[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


class Metering:
    __slots__ = ("_estimate", "_ex", "_labels", "_name", "_seen")

    def __init__(self, ex: Exchange, client: ClientConfig) -> None:
        self._ex = ex
        self._name = client.name
        self._labels: ClientLabels = labels_of(client)
        self._seen = 0  # events of `ex.sent` already counted
        # A stream without usage is estimated for a key whose limits need the count; for the
        # others (metrics only) it is not worth parsing every event again.
        self._estimate = client.limits is not None

    def settled(
        self, span: Any, target_id: str, outcome: Outcome, duration_s: float, usage: Usage | None
    ) -> None:
        ex = self._ex
        inp = out = None
        if usage is not None and (usage.input_tokens or usage.output_tokens):
            # (none at all is no count: what a translated stream says when its target sent
            # none - the Messages API's events must carry numbers)
            inp, out = usage.input_tokens, usage.output_tokens
        labels = self._labels.tokens
        sent = ex.sent
        if len(sent) > self._seen:  # a stream relayed these events
            fresh, self._seen = sent[self._seen :], len(sent)
            if inp is None and out is None:
                if not self._estimate:
                    return
                if outcome.kind is not OutcomeKind.SUCCESS and _asks_usage(ex.payload):
                    return  # a cut stream: the continuation's usage chunk bills it
                inp, out = estimate_prompt_tokens(ex.payload), estimate_output_tokens(fresh)
                labels = self._labels.estimated
                if span is not None and span.is_recording():
                    span.set_attribute("turnout.usage.estimated", True)
        if inp is None and out is None:
            return  # nothing came back that a provider bills
        inp, out = inp or 0, out or 0
        target = ex.config.targets.get(target_id)
        price = target.profile.price if target is not None else None
        nusd = 0
        if price is not None:
            nusd = round((inp * price.input_per_mtok + out * price.output_per_mtok) * 1000)
        ex.rt.limits.account(self._name, inp + out, nusd)
        m = ex.rt.telemetry.metrics
        m.client_tokens.add_key(inp + out, labels)
        if nusd:
            m.client_spend.add_key(nusd / 1e9, self._labels.client)


def metered(ex: Exchange, listeners: tuple[Listener, ...]) -> tuple[Listener, ...]:
    """`listeners` with the client key's metering first (requests with a client key)."""
    if not ex.ask_client:  # no key (a request lookup would miss: a KeyError)
        return listeners
    return (Metering(ex, ex.request[CLIENT]), *listeners)
