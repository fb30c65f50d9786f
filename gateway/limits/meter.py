"""The HTTP side of limits: admission before routing (a 429 in OpenAI's shape, with
`Retry-After` and `x-ratelimit-*`), the headers on answers, and each attempt's usage turned
into tokens and spend (`Metering`, a settlement listener).

Over a rate limit: 429, type `rate_limit_exceeded`, code `rpm_limit_exceeded` or
`tpm_limit_exceeded`. Over a budget: 429, type `insufficient_quota` (OpenAI's, for spend),
code `budget_exceeded`, `param` naming it (`limits.usd_per_day`, `limits.usd_per_month`).
Errors name the client by its configured name, never by its key.

A stream whose provider sent no usage is estimated (~4 characters a token: the prompt's text
and the text relayed) and flagged: `turnout.usage.estimated` on the attempt's span and
`estimated="true"` on `turnout_client_tokens_total`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.config.clients import ClientConfig
from gateway.edge.context import CLIENT
from gateway.edge.errors import GatewayError
from gateway.limits.ledger import Ledger, Verdict
from gateway.limits.windows import duration
from gateway.telemetry.hub import Usage
from gateway.telemetry.metrics import Metrics
from gateway.upstream.sse import Kind, inspect
from health.outcome import Outcome, OutcomeKind
from policies.features import CHARS_PER_TOKEN

if TYPE_CHECKING:
    from gateway.pipeline.exchange import Exchange
    from gateway.pipeline.settle import Listener

_request_key: Any = getattr(web, "RequestKey", None)
# the admission's verdict, for the answer's x-ratelimit-* headers (keys with rpm or tpm)
VERDICT: Any = _request_key("limits", Verdict) if _request_key else "turnout.limits"

_NAMES = {
    "rpm": ("requests per minute", "rpm_limit_exceeded"),
    "tpm": ("tokens per minute", "tpm_limit_exceeded"),
    "usd_per_day": ("US dollars per day", "budget_exceeded"),
    "usd_per_month": ("US dollars per month", "budget_exceeded"),
}


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


def client_attributes(client: ClientConfig) -> dict[str, str]:
    """A client's metric attributes: its configured name and labels (bounded by the config)."""
    return {"client": client.name, **{f"client_{k}": v for k, v in client.labels.items()}}


# id(client) -> (client, admitted attributes): configs are frozen, built once per load
_ADMITTED: dict[int, tuple[ClientConfig, dict[str, str]]] = {}


def _admitted(client: ClientConfig) -> dict[str, str]:
    hit = _ADMITTED.get(id(client))
    if hit is not None and hit[0] is client:
        return hit[1]
    if len(_ADMITTED) > 10_000:  # clients of many reloads: start again
        _ADMITTED.clear()
    attrs = {**client_attributes(client), "result": "admitted", "limit": ""}
    _ADMITTED[id(client)] = (client, attrs)
    return attrs


def headers(v: Verdict) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for what the key's limits are now."""
    out: dict[str, str] = {}
    if v.rpm is not None:
        out["x-ratelimit-limit-requests"] = str(v.rpm)
        out["x-ratelimit-remaining-requests"] = str(v.requests_left)
        out["x-ratelimit-reset-requests"] = duration(v.requests_reset_s)
    if v.tpm is not None:
        out["x-ratelimit-limit-tokens"] = str(v.tpm)
        out["x-ratelimit-remaining-tokens"] = str(v.tokens_left)
        out["x-ratelimit-reset-tokens"] = duration(v.tokens_reset_s)
    return out


def stamp(verdict: Verdict, response: web.StreamResponse) -> None:
    """Our limits' headers on an answer, in place of any the provider sent."""
    h = response.headers
    for name in [n for n in h if n.lower().startswith("x-ratelimit-")]:
        del h[name]
    h.update(headers(verdict))


def refusal(client: ClientConfig, v: Verdict) -> GatewayError:
    noun, code = _NAMES[v.refused]
    retry = {"Retry-After": str(max(1, math.ceil(v.retry_after_s)))}
    limits = client.limits
    assert limits is not None
    if v.refused in ("rpm", "tpm"):
        limit = getattr(limits, v.refused)
        return RateLimited(
            f"Rate limit reached for client {client.name!r} on {noun}: limit {limit}. "
            f"Try again in {duration(v.retry_after_s)}.",
            code=code,
            param=f"limits.{v.refused}",
            headers={**headers(v), **retry},
        )
    budget = getattr(limits, v.refused)
    resets = datetime.fromtimestamp(v.budget_reset_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return BudgetExceeded(
        f"Client {client.name!r} has spent its budget of ${budget:g} ({noun}); "
        f"it resets at {resets}.",
        param=f"limits.{v.refused}",
        headers=retry,
    )


def admit(request: web.Request, ledger: Ledger, metrics: Metrics, client: ClientConfig) -> None:
    """Count the request against `client`'s limits, or raise its 429."""
    verdict = ledger.admit(client)
    if verdict is not None and verdict.refused:
        attrs = {**client_attributes(client), "result": "limited", "limit": verdict.refused}
        metrics.client_requests.add(1, attrs)
        raise refusal(client, verdict)
    metrics.client_requests.add(1, _admitted(client))
    if verdict is not None and (verdict.rpm is not None or verdict.tpm is not None):
        request[VERDICT] = verdict


def _asks_usage(payload: Mapping[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def estimate_prompt_tokens(payload: Mapping[str, Any]) -> int:
    chars = 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        for m in messages:
            content = m.get("content") if isinstance(m, Mapping) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(p.get("text") or "") for p in content if isinstance(p, Mapping))
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


class Metering:
    """Counts each settled attempt's usage against its client: tokens, and spend at the
    answering target's price (unpriced targets cost nothing). Runs before telemetry's
    listener, so the attempt's span is still open to be flagged."""

    __slots__ = ("_attrs", "_client", "_ex", "_seen")

    def __init__(self, ex: Exchange, client: ClientConfig) -> None:
        self._ex = ex
        self._client = client
        self._attrs = client_attributes(client)
        self._seen = 0  # events of `ex.sent` already counted

    def settled(
        self, span: Any, target_id: str, outcome: Outcome, duration_s: float, usage: Usage | None
    ) -> None:
        ex = self._ex
        sent = ex.sent
        fresh, self._seen = sent[self._seen :], len(sent)
        inp = usage.input_tokens if usage is not None else None
        out = usage.output_tokens if usage is not None else None
        estimated = False
        if inp is None and out is None:
            if not fresh:
                return  # nothing came back that a provider bills
            if outcome.kind is not OutcomeKind.SUCCESS and _asks_usage(ex.payload):
                return  # a cut stream: a continuation's usage chunk bills it (upstream.seam)
            inp, out = estimate_prompt_tokens(ex.payload), estimate_output_tokens(fresh)
            estimated = True
            if span is not None and span.is_recording():
                span.set_attribute("turnout.usage.estimated", True)
        inp, out = inp or 0, out or 0
        target = ex.config.targets.get(target_id)
        price = target.profile.price if target is not None else None
        nusd = 0
        if price is not None:
            nusd = round((inp * price.input_per_mtok + out * price.output_per_mtok) * 1000)
        ex.rt.limits.account(self._client.name, inp + out, nusd)
        m = ex.rt.telemetry.metrics
        m.client_tokens.add(inp + out, {**self._attrs, "estimated": str(estimated).lower()})
        if nusd:
            m.client_spend.add(nusd / 1e9, self._attrs)


def metered(ex: Exchange, listeners: tuple[Listener, ...]) -> tuple[Listener, ...]:
    """`listeners` with the client's metering first (requests with a client key)."""
    client = ex.request.get(CLIENT)
    if client is None:
        return listeners
    return (Metering(ex, client), *listeners)
