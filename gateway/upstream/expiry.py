"""An attempt's timer: `asyncio.timeout_at` for the request path, without its lookups.

asyncio's `Timeout` finds the running loop and the current task each time it is entered (on
Python 3.11 each lookup is a getpid syscall) and is an async context manager (two coroutines
per use). `Expiry` is given the loop, finds the task through it, and is a plain `with`: one
timer handle, and asyncio's own rule for turning the timer's cancel into TimeoutError — only
its own cancel; one from elsewhere (the client leaving, a lost hedge, the drain) propagates.

    with Expiry(loop, deadline):
        resp = await session.post(...)   # TimeoutError at the block's exit if it was late
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Expiry:
    __slots__ = ("_cancelling", "_handle", "_loop", "_task", "_when", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._loop = loop
        self._when = when
        self._handle: asyncio.TimerHandle | None = None
        self.expired = False

    def __enter__(self) -> Expiry:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("Expiry must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._loop.call_at(self._when, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._handle = None
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # As asyncio.Timeout: the cancel is ours to absorb only if no other was requested.
        if (
            self.expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
