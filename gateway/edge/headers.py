"""Which headers cross the gateway, in each direction. Allowlists: anything else stays behind.

Client credentials (Authorization, api-key, OpenAI-Organization...) never reach a provider;
the provider's own key is injected instead. Hop-by-hop headers never cross.
"""

from __future__ import annotations

from collections.abc import Mapping

from multidict import CIMultiDictProxy

from gateway.config.model import ProviderConfig
from gateway.formats.anthropic_messages import VERSION as ANTHROPIC_VERSION

# From the client to the provider (besides the ones we set ourselves). Not `baggage`: it
# carries whatever the caller's services put in it (user and tenant ids...), and a provider is
# a third party. Trace ids (`traceparent`) identify nothing but the trace.
FORWARD_TO_PROVIDER = frozenset(
    {"traceparent", "tracestate", "user-agent", "openai-beta", "accept-language"}
)
# And to a provider of this format only: the features a client opts into (Anthropic's betas:
# prompt caching, longer outputs, ... - what Anthropic's own tools send).
FORWARD_BY_FORMAT = {"anthropic": frozenset({"anthropic-beta"})}

# From the provider back to the client: rate-limit state (OpenAI's, Anthropic's) and
# OpenAI's processing headers.
FORWARD_TO_CLIENT_PREFIXES = ("x-ratelimit-", "openai-", "anthropic-ratelimit-")


def upstream_headers(
    client: CIMultiDictProxy[str], provider: ProviderConfig, request_id: str
) -> dict[str, str]:
    own, forwarded = _own(provider)
    out = {}
    for name in forwarded:  # a few lookups, however many headers the client sent
        value = client.get(name)
        if value is not None:
            out[name] = value
    out.update(own)
    out["X-Request-Id"] = request_id
    return out


# provider config (by identity: configs are frozen) -> what `_own` made for it
_OWN: dict[int, tuple[ProviderConfig, dict[str, str], tuple[str, ...]]] = {}


def _own(provider: ProviderConfig) -> tuple[dict[str, str], tuple[str, ...]]:
    """What the gateway itself sends a provider on every request, and which of the client's
    headers it forwards (`FORWARD_TO_PROVIDER` and its format's `FORWARD_BY_FORMAT`, less the
    names it sets itself, in any case:
    one value per header, the provider's own winning). Built once per provider config (a
    reload makes new ones; the oldest are dropped past a few hundred)."""
    known = _OWN.get(id(provider))
    if known is not None and known[0] is provider:
        return known[1], known[2]
    out = dict(provider.headers)
    out["Content-Type"] = "application/json"
    out["Accept"] = "application/json, text/event-stream"
    if provider.format == "anthropic":
        if provider.api_key:
            out["x-api-key"] = provider.api_key
        if not any(k.lower() == "anthropic-version" for k in out):  # the provider's own wins
            out["anthropic-version"] = ANTHROPIC_VERSION
    elif provider.format == "gemini":
        if provider.api_key:  # a header, never `?key=` in the URL (URLs get logged)
            out["x-goog-api-key"] = provider.api_key
    elif provider.api_key:
        out["Authorization"] = f"Bearer {provider.api_key}"
    taken = {k.lower() for k in out}
    wanted = FORWARD_TO_PROVIDER | FORWARD_BY_FORMAT.get(provider.format, frozenset())
    forwarded = tuple(sorted(wanted - taken))
    if len(_OWN) >= 256:
        _OWN.clear()
    _OWN[id(provider)] = (provider, out, forwarded)
    return out, forwarded


def client_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in upstream.items():
        lk = k.lower()
        if lk.startswith(FORWARD_TO_CLIENT_PREFIXES) and lk != "openai-organization":
            out[k] = v
    return out
