"""Running the gateway: event loop choice, listening socket, signals and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from gateway.edge.context import ADMIN_APP, RUNTIME
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
    """An app on a TCP port (and its admin plane on another, when the config gives it one:
    `app[ADMIN_APP]`). `start()` returns once listening; `stop()` drains and closes."""

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
        self.reuse_port = reuse_port  # several worker processes on one port (each listener)
        self._runner: GuardedRunner | None = None
        self._admin_runner: GuardedRunner | None = None
        self.admin_port: int | None = None  # the admin listener's, once started

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    @property
    def admin_url(self) -> str:
        """Where /admin/*, /ui and /metrics answer: their own listener, or the main one."""
        listener = self.app[RUNTIME].admin_listener
        if listener is None or self.admin_port is None:
            return self.url
        return _url(listener[0], self.admin_port)

    async def _listen(self, app: web.Application, host: str, port: int) -> GuardedRunner:
        server = self.app[RUNTIME].config.server
        limits = ConnectionLimits(server.header_timeout_s, server.max_connections)
        runner = GuardedRunner(
            app,
            limits,
            handler_cancellation=True,  # a client going away cancels its upstream attempt
            access_log=None,
            shutdown_timeout=1.0,  # our own drain (below) has already waited for the work
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            host,
            port,
            backlog=1024,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner

    async def start(self) -> None:
        rt = self.app[RUNTIME]
        runner = await self._listen(self.app, self.host, self.port)
        admin_app = self.app.get(ADMIN_APP)
        if admin_app is not None and rt.admin_listener is not None:
            host, port = rt.admin_listener
            try:
                self._admin_runner = await self._listen(admin_app, host, port)
            except BaseException:
                await runner.cleanup()
                raise
            self.admin_port = int(self._admin_runner.addresses[0][1])
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        rt.bound_host = self.host

    async def stop(self) -> None:
        """Drain, then close: /readyz turns 503 at once, no new connections are accepted,
        requests in flight get `grace_s` to finish; then streams still running end with an
        in-band error event and requests still waiting for an upstream get 503."""
        runner, self._runner = self._runner, None
        admin, self._admin_runner = self._admin_runner, None
        if runner is None:
            return
        drain = self.app[RUNTIME].drain
        drain.draining = True
        for site in [*runner.sites, *(admin.sites if admin is not None else ())]:
            await site.stop()
        if drain.active and self.grace_s > 0:
            log.info("draining: %d requests in flight", len(drain.active))
        ended = await drain.finish(self.grace_s)
        if ended:
            log.warning("grace period over: ended %d requests still in flight", ended)
        if admin is not None:
            await admin.cleanup()
        await runner.cleanup()


def _url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{host}:{port}"


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
