"""The fleet's pub/sub subscription: lossy by design, watched by PING, resubscribed.

Liveness is this replica's own business: every `ping_s` it sends PING on the subscribed
connection, and a connection that answers nothing (not a pong, not a message) for
`silent_after_s` is dead even if its socket looks open: it is torn down and made again. (Until
issue 18 every replica published a heartbeat that every replica received: N² deliveries.)
A `restart` event (the Redis master moved: Sentinel) makes it resubscribe at once, on the
new master. Anything missed in between is repaired by reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from health.clock import Clock

log = logging.getLogger("turnout.health.fleet")


def check_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop. A background loop that suppresses
    TimeoutError, catches Exception or reads through redis-py's own timeouts calls it: on
    Python 3.11 a cancel that lands as an `asyncio.timeout` expires comes out as TimeoutError
    (redis-py's `get_message(timeout=...)` then returns None), and the loop would go on
    forever - a store that never closed, seen once as a CI teardown that hung."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def subscribe_forever(
    client: Any,
    channel: str,
    on_message: Callable[[bytes | str], None],
    *,
    subscribed: asyncio.Event,
    restart: asyncio.Event,
    clock: Clock,
    timeout_s: float,
    retry_s: float,
    ping_s: float,
    silent_after_s: float,
) -> None:
    backoff = retry_s
    while True:
        pubsub = client.pubsub()
        try:
            restart.clear()
            async with asyncio.timeout(timeout_s * 2):
                await pubsub.subscribe(channel)
            subscribed.set()
            last = pinged = clock.now()
            backoff = retry_s
            while True:
                # redis-py reads with a timeout of its own: a cancel that lands as it expires
                # comes back as "no message" - honour it here, not at the next error.
                check_cancelled()
                if restart.is_set():
                    raise ConnectionError("the Redis master moved")
                now = clock.now()
                if now - pinged >= ping_s:
                    pinged = now
                    async with asyncio.timeout(timeout_s * 2):
                        await pubsub.ping()
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
                now = clock.now()
                if msg is not None:
                    last = now  # a pong or a message: the connection is alive
                    if msg.get("type") == "message":
                        on_message(msg["data"])
                elif now - last > silent_after_s:
                    raise TimeoutError(f"no pong, no message for {silent_after_s} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # resubscribe; reconciliation covers the gap
            check_cancelled()
            log.debug("fleet subscription lost: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)
        finally:
            # Bounded: closing a subscription whose socket died can wait on its lock forever.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s * 2):
                    await pubsub.aclose()
