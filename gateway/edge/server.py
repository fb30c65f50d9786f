"""Running the gateway: event loop choice, listening socket, signals and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from gateway.edge.context import RUNTIME
from gateway.edge.protocol import ConnectionLimits, GuardedRunner

log = logging.getLogger("turnout.server")


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


class Server:
    """An app on a TCP port. `start()` returns once listening; `stop()` drains and closes."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        grace_s: float = 10.0,
        reuse_port: bool = False,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.grace_s = grace_s
        self.reuse_port = reuse_port  # several worker processes on one port
        self._runner: GuardedRunner | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        server = self.app[RUNTIME].config.server
        limits = ConnectionLimits(server.header_timeout_s, server.max_connections)
        runner = GuardedRunner(
            self.app,
            limits,
            handler_cancellation=True,  # a client going away cancels its upstream attempt
            access_log=None,
            shutdown_timeout=1.0,  # our own drain (below) has already waited for the work
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.host,
            self.port,
            backlog=1024,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.app[RUNTIME].bound_host = self.host

    async def stop(self) -> None:
        """Drain, then close: /readyz turns 503 at once, no new connections are accepted,
        requests in flight get `grace_s` to finish; then streams still running end with an
        in-band error event and requests still waiting for an upstream get 503."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        drain = self.app[RUNTIME].drain
        drain.draining = True
        for site in list(runner.sites):
            await site.stop()
        if drain.active and self.grace_s > 0:
            log.info("draining: %d requests in flight", len(drain.active))
        ended = await drain.finish(self.grace_s)
        if ended:
            log.warning("grace period over: ended %d requests still in flight", ended)
        await runner.cleanup()


async def wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
