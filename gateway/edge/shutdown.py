"""The drain's last resort: requests still running when the grace period is over are
cancelled with one message, so the code they are in can tell that cancel from a client that
left, and end them honestly (a 503 for a waiting request, an in-band error for a stream)."""

from __future__ import annotations

import asyncio
from typing import Any

CANCEL_MESSAGE = "turnout-shutdown"  # the cancel message that ends requests after the grace period


def end_for_shutdown(task: asyncio.Task[Any]) -> None:
    task.cancel(CANCEL_MESSAGE)


def absorb_shutdown(exc: asyncio.CancelledError) -> bool:
    """Whether `exc` is the drain's cancel; if so the current task is un-cancelled, so it can
    still answer. Any other cancel (the client went away) must be re-raised by the caller."""
    task = asyncio.current_task()
    if task is None or not (exc.args and exc.args[0] == CANCEL_MESSAGE):
        return False
    task.uncancel()
    return True


class _Tracked:
    """A request's task in `Drain.active` for the length of a `with` block (a class, not a
    `contextlib` generator: this is on every request)."""

    __slots__ = ("_active", "_task")

    def __init__(self, active: set[asyncio.Task[Any]], task: asyncio.Task[Any] | None) -> None:
        self._active = active
        self._task = task

    def __enter__(self) -> None:
        if self._task is not None:
            self._active.add(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._active.discard(self._task)


class Drain:
    """The requests in flight, for a drain that lets them finish: `/readyz` reads `draining`,
    `gateway.edge.app` tracks each request's task, `gateway.edge.server` ends them (`finish`)."""

    def __init__(self) -> None:
        self.active: set[asyncio.Task[Any]] = set()
        self.draining = False

    def tracking(self, loop: asyncio.AbstractEventLoop | None = None) -> _Tracked:
        """`with drain.tracking(loop):` the current task counts as in flight until the block
        ends (`loop`, the running one, saves looking it up)."""
        return _Tracked(self.active, asyncio.current_task(loop))

    async def finish(self, grace_s: float) -> int:
        """Wait up to `grace_s` for the requests in flight, then end the rest (each answers
        honestly, see `absorb_shutdown`); the number that had to be ended."""
        loop = asyncio.get_running_loop()
        until = loop.time() + grace_s
        while self.active and (remaining := until - loop.time()) > 0:
            await asyncio.wait(list(self.active), timeout=remaining)
        left = list(self.active)
        for task in left:
            end_for_shutdown(task)
        if left:
            await asyncio.wait(left, timeout=2.0)
        return len(left)
