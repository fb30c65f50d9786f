"""The fleet's pub/sub subscription: lossy by design, watched by a heartbeat, resubscribed.

Every replica publishes a heartbeat about once a second, so a subscription that hears nothing
for a few seconds is dead even if its socket looks open; it is torn down and made again.
Anything missed in between is repaired by reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from health.clock import Clock

log = logging.getLogger("turnout.health.fleet")


async def subscribe_forever(
    client: Any,
    channel: str,
    on_message: Callable[[bytes | str], None],
    *,
    subscribed: asyncio.Event,
    clock: Clock,
    timeout_s: float,
    retry_s: float,
    silent_after_s: float,
) -> None:
    backoff = retry_s
    while True:
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(timeout_s * 2):
                await pubsub.subscribe(channel)
            subscribed.set()
            last = clock.now()
            backoff = retry_s
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
                now = clock.now()
                if msg is not None and msg.get("type") == "message":
                    last = now
                    on_message(msg["data"])
                elif now - last > silent_after_s:
                    raise TimeoutError(
                        f"no pub/sub message (not even a heartbeat) for {silent_after_s} s"
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # resubscribe; reconciliation covers the gap
            log.debug("fleet subscription lost: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)
        finally:
            # Bounded: closing a subscription whose socket died can wait on its lock forever.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s * 2):
                    await pubsub.aclose()
