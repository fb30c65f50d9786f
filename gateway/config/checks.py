"""Warnings `turnout check` prints about a config that loads but likely will not work."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from gateway.config.model import Config, ProviderConfig

# The path well-known OpenAI-compatible hosts serve their API under; `base_url` must end
# with it because the gateway appends only the endpoint (`<base_url>/chat/completions`).
# None: the host serves the API both at the root and under /v1, any path is fine.
KNOWN_API_PATHS: Mapping[str, str | None] = {
    "api.openai.com": "/v1",
    "api.groq.com": "/openai/v1",
    "api.together.xyz": "/v1",
    "api.mistral.ai": "/v1",
    "openrouter.ai": "/api/v1",
    "api.fireworks.ai": "/inference/v1",
    "api.deepseek.com": None,
}

# Header / query parameter names that carry a credential (lower case; substrings).
_CREDENTIAL_WORDS = ("auth", "key", "token", "secret")
_CREDENTIAL_QUERY_NAMES = frozenset({"code", "sig"})  # Azure Functions, SAS


def config_warnings(config: Config) -> list[str]:
    """One line per likely mistake, in provider order."""
    out: list[str] = []
    for name, p in config.providers.items():
        if not sends_credential(p):
            out.append(f"providers.{name}.api_key is empty (no Authorization is sent)")
        if p.format == "openai":
            out.extend(f"providers.{name}.base_url {w}" for w in base_url_warnings(p.base_url))
        if p.format == "gemini" and any(k.lower() == "key" for k in p.query):
            out.append(
                f"providers.{name}.query.key puts the API key in every URL (proxies and access "
                "logs keep URLs): set api_key instead, sent as the x-goog-api-key header"
            )
    return out


def sends_credential(p: ProviderConfig) -> bool:
    """Whether requests to ``p`` carry some credential: ``api_key``, a credential header
    (Authorization, api-key, x-api-key...), a credential query parameter, or user:password
    in ``base_url``."""
    if p.api_key or "@" in urlsplit(p.base_url).netloc:
        return True
    if _any_credential(p.headers.items()):
        return True
    return _any_credential(p.query.items(), also=_CREDENTIAL_QUERY_NAMES)


def _any_credential(items: Iterable[tuple[str, str]], also: frozenset[str] = frozenset()) -> bool:
    for name, value in items:
        lower = name.lower()
        if value and (lower in also or any(w in lower for w in _CREDENTIAL_WORDS)):
            return True
    return False


def base_url_warnings(base_url: str) -> list[str]:
    """Why requests to ``<base_url>/chat/completions`` would likely 404, if they would."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    shown = _public(base_url.rstrip("/"))
    host = (parts.hostname or "").lower()
    if host in KNOWN_API_PATHS:
        want = KNOWN_API_PATHS[host]
        if want is None or path == want:
            return []
        fixed = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], path=want))
        return [
            f"{shown!r} does not end with {want}, where {host} serves the OpenAI API: "
            f"requests would go to {shown}/chat/completions and fail (404); use {fixed!r}"
        ]
    if not path:
        return [
            f"{shown!r} has no path: requests will go to {shown}/chat/completions, but most "
            f"OpenAI-compatible servers serve under /v1 (base_url {shown + '/v1'!r})"
        ]
    return []


def _public(url: str) -> str:
    """``url`` without user:password (a secret); base_url carries no query."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
