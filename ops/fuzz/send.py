"""Sending the structured cases with aiohttp's client (pooled keep-alive connections)."""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
from yarl import URL

from .types import CLIENT_ERROR, CLOSED, HANG, MALFORMED, OK, Answer, HttpSpec, Reply


def new_session(concurrency: int, *, fresh: bool = False) -> aiohttp.ClientSession:
    """No proxies from the environment (trust_env=False): everything stays on loopback."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=fresh)
    return aiohttp.ClientSession(connector=connector, trust_env=False)


async def send_http(
    session: aiohttp.ClientSession, base_url: str, spec: HttpSpec, timeout_s: float
) -> Answer:
    started = time.monotonic()
    try:
        url = URL(base_url + spec.path, encoded=True)
    except ValueError as exc:
        return Answer(CLIENT_ERROR, detail=f"url: {exc}")
    skip = ("Content-Type",) if spec.no_content_type else ()
    data: bytes | io.BytesIO | None = spec.body
    if spec.body is not None and len(spec.body) > 1 << 20:
        data = io.BytesIO(spec.body)  # aiohttp warns (ResourceWarning) for large raw bytes
    try:
        async with asyncio.timeout(timeout_s):
            async with session.request(
                spec.method,
                url,
                headers=list(spec.headers),
                data=data,
                skip_auto_headers=skip,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
                reply = Reply(resp.status, headers, body)
    except TimeoutError:
        return Answer(HANG, detail=f"no complete answer in {timeout_s:.0f}s", seconds=timeout_s)
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
        aiohttp.ClientPayloadError,
    ) as exc:
        return Answer(CLOSED, detail=f"{type(exc).__name__}: {exc}", seconds=_since(started))
    except aiohttp.ClientResponseError as exc:  # the answer is not valid HTTP
        return Answer(MALFORMED, detail=f"{type(exc).__name__}: {exc}", seconds=_since(started))
    except (aiohttp.ClientError, ValueError, TypeError, UnicodeError) as exc:
        return Answer(CLIENT_ERROR, detail=f"{type(exc).__name__}: {exc}", seconds=_since(started))
    return Answer(OK, (reply,), seconds=_since(started))


def _since(started: float) -> float:
    return time.monotonic() - started
