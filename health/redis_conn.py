"""Redis clients for the fleet store, from a URL, with the discipline the background needs:
short timeouts, no retries (the next tick is the retry), a small bounded pool.

    redis://[:password@]host:port/db        rediss:// for TLS, unix:///path.sock?db=0
    redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]
    redis+cluster://[:password@]host:port    (pub/sub is not used: reconciliation alone; every
                                             command of a tick is single-slot: one target's
                                             keys share a hash tag, and MGET, which a
                                             cluster pipeline refuses, runs as a script)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

# Some redis-py releases type these calls and others do not (8.2 typed Sentinel's
# constructor), so they are called through a typed name, never with a `type: ignore` that one
# release or the other calls unused.


def describe(url: str) -> str:
    """The URL without its password, for logs and /readyz."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def _options(timeout_s: float, max_connections: int) -> dict[str, Any]:
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry_on_timeout": False,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": max_connections,
        "health_check_interval": 0,
    }


async def follow_master(client: Any) -> bool:
    """For a Sentinel-managed client: ask the Sentinels where the master is now, and True when
    it moved (idle connections to the old one are dropped, so the next command goes to the new
    master). redis-py asks only when it opens a connection, and a demoted master keeps serving
    the ones it has until Sentinel reconfigures it - seconds later (issue 18: 10.5 s of writes
    to the old master). Any other client, or Sentinels that do not answer: False (the master we
    have is still the best we know)."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return False
    before = pool.master_address
    try:
        ask: Callable[[], Awaitable[Any]] = pool.get_master_address  # typed: see the top
        now = await ask()
    except Exception:
        return False
    return before is not None and now != before


async def aclose(client: Any) -> None:
    """Close `client`, and the connections to the Sentinels its pool asks (redis-py leaves
    those to the caller)."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "redis+cluster"


def connect(url: str, *, timeout_s: float, max_connections: int = 4) -> tuple[Any, bool]:
    """A client for `url` and whether pub/sub is available on it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "redis+sentinel":
        netloc = parts.netloc
        password = None
        if "@" in netloc:
            cred, netloc = netloc.rsplit("@", 1)
            password = unquote(cred.split(":", 1)[-1]) or None
        hosts = []
        for hp in netloc.split(","):
            host, _, port = hp.rpartition(":")
            hosts.append((host or hp, int(port or 26379)))
        segs = [s for s in parts.path.split("/") if s]
        if not segs:
            raise ValueError(
                "redis+sentinel:// needs a service name: redis+sentinel://host:port/mymaster"
            )
        service, db = segs[0], int(segs[1]) if len(segs) > 1 else 0
        opts = _options(timeout_s, max_connections)
        make: Callable[..., Sentinel] = Sentinel  # typed: see the top
        sentinel = make(
            hosts,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            sentinel_kwargs={"socket_timeout": timeout_s, "password": password},
        )
        client = sentinel.master_for(service, db=db, password=password, **opts)
        return client, True
    if scheme == "redis+cluster":
        plain = "redis://" + parts.netloc + (parts.path or "")
        client = RedisCluster.from_url(
            plain,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # No retries (MOVED/ASK are still followed): the next tick is the retry, and a
            # stall must not hold the background loop.
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
        )
        return client, False
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    return Redis.from_url(url, **_options(timeout_s, max_connections)), True
