"""Each settled attempt's usage, counted against its client key: tokens, and spend at the
answering target's price (an unpriced target costs nothing). A settlement listener
(`gateway.pipeline.settle`), first of the request's listeners, so the attempt's span is still
open when it is flagged.

Usage is the provider's (`usage` of an answer, a stream's usage chunk). A stream without one,
for a key with limits, is estimated (~4 characters a token: the prompt's text and the text
relayed) and flagged:
`turnout.usage.estimated` on the attempt's span, `estimated="true"` on
`turnout_client_tokens_total`. A stream cut after its first byte whose client asked for
usage is left to the stream that completes it: the continuation's usage chunk bills the cut
attempts too (`gateway.upstream.seam`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.config.clients import ClientConfig
from gateway.edge.context import CLIENT
from gateway.limits.labels import ClientLabels, labels_of
from gateway.telemetry.hub import Usage
from gateway.upstream.sse import Kind, inspect
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


def estimate_output_tokens(events: list[bytes]) -> int:
    """From relayed data events: the text of every choice's delta (chat) or `text`."""
    chars = 0
    for raw in events:
        info = inspect(raw)
        if info.kind is not Kind.DATA:
            continue
        for ch in info.payload.get("choices") or ():
            delta = ch.get("delta")
            text = delta.get("content") if isinstance(delta, Mapping) else ch.get("text")
            if isinstance(text, str):
                chars += len(text)
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
        if usage is not None:
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
