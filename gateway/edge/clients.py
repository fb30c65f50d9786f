"""Client keys at the edge: who is calling (`authenticate`), and what of the request's
routing overrides that client may steer (`steering`). See gateway/config/clients.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config.clients import ClientConfig, digest
from gateway.config.model import Config
from gateway.edge.errors import Forbidden, Unauthorized


def presented_key(headers: Mapping[str, str]) -> str:
    """`Authorization: Bearer <key>` (OpenAI's clients) or `x-api-key` (Anthropic's)."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key", "").strip()


# key -> its digest, for the keys that named a client: the same few keys come on every
# request, and a SHA-256 per request was a measurable share of it. A digest is a pure function
# of the key, so a reload invalidates nothing; unknown keys are never kept (a caller cannot
# grow this), and it starts again past `_KNOWN_MAX`.
_KNOWN: dict[str, str] = {}
_KNOWN_MAX = 4096


def authenticate(config: Config, headers: Mapping[str, str]) -> ClientConfig | None:
    """The calling client; None when the config has no client keys (anyone may call).
    Raises Unauthorized (401, OpenAI's shape) for a missing or unknown key, never echoing it."""
    clients = config.clients
    if not clients:
        return None
    key = presented_key(headers)
    if not key:
        raise Unauthorized(
            "A client key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`."
        )
    known = _KNOWN.get(key)
    hashed = known if known is not None else digest(key)
    client = clients.get(hashed)
    if client is None:
        raise Unauthorized("The client key is not valid.")
    if known is None:
        if len(_KNOWN) >= _KNOWN_MAX:
            _KNOWN.clear()
        _KNOWN[key] = hashed
    return client


def steering(
    client: ClientConfig,
    headers: CIMultiDictProxy[str],
    payload: Mapping[str, Any],
) -> tuple[CIMultiDictProxy[str], Mapping[str, Any]]:
    """The request's headers and body as routing may read them for `client`: the override
    headers it may not send are ignored (or, with `forbidden_overrides: refuse`, a 403 names
    them), and so is routing metadata (the headers and body fields routes `match` on) unless
    it may steer by it (the body's `metadata` and `user` are only ever ignored: they have
    other uses)."""
    drop = client.ignored  # derived at load (gateway.config.clients)
    if "metadata" not in client.overrides and ("metadata" in payload or "user" in payload):
        payload = {k: v for k, v in payload.items() if k not in ("metadata", "user")}
    if not any(name in headers for name in drop):  # a few case-insensitive lookups
        return headers, payload
    if client.refuses:  # forbidden_overrides: refuse
        sent = sorted({k.lower() for k in headers} & drop)
        raise Forbidden(
            f"This client key may not send {', '.join(sent)} (its overrides: "
            f"{', '.join(sorted(client.overrides)) or 'none'}).",
            param=sent[0],
            code="override_not_allowed",
        )
    kept = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)
    return CIMultiDictProxy(kept), payload
