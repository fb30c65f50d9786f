"""Connections to providers: one pooled aiohttp session per provider, reading a body under
an idle timer (`IdleReads`), and transport errors mapped to outcomes."""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import Iterable
from types import TracebackType

import aiohttp
import orjson

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
                # A provider's cookies (Cloudflare's on OpenAI's answers) are not kept: the
                # next request is another client's, and a replayed cookie would tie them.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._sessions[key] = s
        return s

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


class IdleReads:
    """Reads a provider's body chunk by chunk under one timer: TimeoutError (raised when the
    `async with` block exits) after `idle_s` of silence or at `end_s` (loop time); classify it
    with `health.outcome.stalled`. The idle clock runs only while waiting for the provider,
    never while the caller writes what came.

        async with IdleReads(content, idle_s, end_s) as reads:
            while chunk := await reads.next(): ...

    A chunk does not touch the timer: it moves a deadline (a float), and the one timer, set
    for the soonest the body could be overdue, looks again when it fires and is set anew if
    it is not (a stream of many chunks arms it once, not twice per chunk: each arming is a
    libuv timer started and stopped, ~5 µs). Overdue, it expires the `asyncio.timeout` that
    the block runs under, on the next loop iteration.
    """

    __slots__ = ("_cm", "_content", "_end_s", "_idle_s", "_idle_until", "_loop", "_timer")

    def __init__(self, content: aiohttp.StreamReader, idle_s: float, end_s: float) -> None:
        self._content = content
        self._idle_s = idle_s
        self._end_s = end_s
        self._loop = asyncio.get_running_loop()
        self._cm = asyncio.timeout(None)
        self._idle_until: float | None = None  # while waiting for the provider
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> IdleReads:
        await self._cm.__aenter__()
        self._timer = self._loop.call_at(
            min(self._loop.time() + self._idle_s, self._end_s), self._look
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._cm.__aexit__(exc_type, exc, tb)

    def _look(self) -> None:
        """The timer fired: expire the block if the body is overdue, else look again when
        it next could be."""
        now = self._loop.time()
        until = self._idle_until
        if now >= self._end_s or (until is not None and now >= until):
            self._timer = None
            self._cm.reschedule(now)  # the timeout expires: TimeoutError at the block's exit
            return
        # Not waiting (the caller is writing): the idle clock starts again at the next wait.
        soonest = until if until is not None else now + self._idle_s
        self._timer = self._loop.call_at(min(soonest, self._end_s), self._look)

    async def next(self) -> bytes:
        """The next chunk (b"" at the end of the body)."""
        self._idle_until = self._loop.time() + self._idle_s
        try:
            return await self._content.readany()
        finally:
            self._idle_until = None


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


MESSAGE_LIMIT = 300  # characters of a provider's error message kept for operators
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|key|api)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)


def provider_message(body: bytes, secrets: Iterable[str] = ()) -> str:
    """The message of a provider's error body (OpenAI's `{"error": {"message"}}`, or text), on
    one line, shortened, with the provider's own secrets and anything key-like masked: it is
    shown in /admin/targets and breaker reasons."""
    text = ""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[: MESSAGE_LIMIT * 4].decode("utf-8", "replace")
    else:
        err = parsed.get("error") if isinstance(parsed, dict) else None
        msg = err.get("message") if isinstance(err, dict) else None
        if msg is None and isinstance(parsed, dict):
            msg = parsed.get("message", err)
        text = msg if isinstance(msg, str) else ""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _KEY_LIKE.sub("***", " ".join(text.split()))
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"
