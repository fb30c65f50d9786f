"""Limits at the edge: admission before routing, a 429 in OpenAI's shape when a limit says
no, and OpenAI's `x-ratelimit-*` headers on the answers of keys with `rpm` or `tpm`.

Over a rate limit: 429, type `rate_limit_exceeded`, code `rpm_limit_exceeded` or
`tpm_limit_exceeded`, `param` naming it (`limits.rpm`), `Retry-After` and the headers. Over
a budget: 429, type `insufficient_quota` (OpenAI's, for spent credit), code
`budget_exceeded`, `param` `limits.usd_per_day` or `limits.usd_per_month`, the reset time in
the message. Errors name the client by its configured name, never by its key.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.config.clients import ClientConfig
from gateway.edge.errors import GatewayError
from gateway.limits.labels import labels_of
from gateway.limits.ledger import Ledger, Meter, Refused, Verdict
from gateway.limits.windows import duration
from gateway.telemetry.metrics import Metrics

_request_key: Any = getattr(web, "RequestKey", None)
# an admitted request's meter, when its key has rpm or tpm: the answer's x-ratelimit-* read it
LIMITED: Any = _request_key("limited", object) if _request_key else "turnout.limited"

_NOUNS = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "usd_per_day": "US dollars per day",
    "usd_per_month": "US dollars per month",
}
_REQUESTS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
_TOKENS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


def headers(meter: Meter, now: float) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` for `meter`'s rate limits as they stand at `now`."""
    out: dict[str, str] = {}
    lim = meter.limits
    reset = duration(meter.windows.minute.ends_at - now)
    if lim.rpm is not None:
        out[_REQUESTS[0]] = meter.rpm_text
        out[_REQUESTS[1]] = str(meter.requests_left())
        out[_REQUESTS[2]] = reset
    if lim.tpm is not None:
        out[_TOKENS[0]] = meter.tpm_text
        out[_TOKENS[1]] = str(meter.tokens_left())
        out[_TOKENS[2]] = reset
    return out


def stamp(meter: Meter, response: web.StreamResponse) -> None:
    """The key's own `x-ratelimit-*` on an answer, in place of any the provider sent (a
    header set here replaces the provider's; one of a limit the key has not is removed, and
    so is Anthropic's `anthropic-ratelimit-*`: the provider account's state is not the
    key's)."""
    h = response.headers
    for name in [k for k in h if k.lower().startswith("anthropic-ratelimit-")]:
        h.popall(name, None)
    lim = meter.limits
    if lim.rpm is None:
        for name in _REQUESTS:
            h.popall(name, None)
    if lim.tpm is None:
        for name in _TOKENS:
            h.popall(name, None)
    h.update(headers(meter, meter.windows.wall()))


def refusal(client: ClientConfig, meter: Meter, v: Verdict, now: float) -> GatewayError:
    noun = _NOUNS[v.refused]
    retry = {"Retry-After": str(max(1, math.ceil(v.retry_after_s)))}
    limit = getattr(meter.limits, v.refused)
    if v.refused in ("rpm", "tpm"):
        return RateLimited(
            f"Rate limit reached for client {client.name!r} on {noun}: limit {limit}. "
            f"Try again in {duration(v.retry_after_s)}.",
            code=f"{v.refused}_limit_exceeded",
            param=f"limits.{v.refused}",
            headers={**headers(meter, now), **retry},
        )
    resets = datetime.fromtimestamp(v.reset_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return BudgetExceeded(
        f"Client {client.name!r} has spent its budget of ${limit:g} ({noun}); "
        f"it resets at {resets}.",
        param=f"limits.{v.refused}",
        headers=retry,
    )


def admit(request: web.Request, ledger: Ledger, metrics: Metrics, client: ClientConfig) -> None:
    """Count the request against `client`'s limits, or raise its 429."""
    labels = labels_of(client)
    try:
        meter = ledger.admit(client)
    except Refused as refused:
        metrics.client_requests.add_key(1, labels.limited(refused.verdict.refused))
        m = ledger.meters[client.name]
        raise refusal(client, m, refused.verdict, ledger.wall()) from None
    metrics.client_requests.add_key(1, labels.admitted)
    # Set for every keyed request (None: no rpm or tpm to announce): a hit costs less than
    # the KeyError of a miss when the answer's headers look it up.
    headed = meter is not None and (meter.limits.rpm is not None or meter.limits.tpm is not None)
    request[LIMITED] = meter if headed else None


def stamp_answer(request: web.Request, response: web.StreamResponse) -> None:
    """Just before an answer's headers leave (configs with client keys only)."""
    meter = request.get(LIMITED)
    if meter is not None:
        stamp(meter, response)
