"""Connections to providers: one pooled aiohttp session per provider, and transport errors
mapped to outcomes."""

from __future__ import annotations

import asyncio
import errno

import aiohttp

from gateway.config.model import ProviderConfig
from health.outcome import FailureReason, Outcome, provider_failure


class UpstreamPool:
    """Lazily created client sessions, one per provider definition (URL, pool size, connect)."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, int, float], aiohttp.ClientSession] = {}

    def session(self, provider: ProviderConfig) -> aiohttp.ClientSession:
        key = (provider.base_url, provider.max_connections, provider.timeouts.connect_s)
        s = self._sessions.get(key)
        if s is None or s.closed:
            connector = aiohttp.TCPConnector(
                limit=provider.max_connections,
                limit_per_host=provider.max_connections,
                ttl_dns_cache=60,
                enable_cleanup_closed=True,
            )
            # Phase timeouts other than connect are enforced by the attempt itself.
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=provider.timeouts.connect_s, connect=None
            )
            s = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[key] = s
        return s

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def transport_outcome(exc: BaseException) -> Outcome:
    """Classify an exception raised while talking to a provider."""
    detail = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return provider_failure(FailureReason.CONNECT_TIMEOUT, detail)
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error.errno == errno.ECONNREFUSED:
            return provider_failure(FailureReason.CONNECT_REFUSED, detail)
        return provider_failure(FailureReason.CONNECT_ERROR, detail)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return provider_failure(FailureReason.CUT, detail)
    if isinstance(exc, aiohttp.ClientResponseError):
        return provider_failure(FailureReason.MALFORMED, detail)
    return provider_failure(FailureReason.CONNECTION_RESET, detail)
