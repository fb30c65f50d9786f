"""The one poller: wait for a side effect with a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[None] | None], timeout_s: float = 2.0) -> None:
    """Wait until `check()` (awaited if async) stops raising AssertionError (re-raises it on
    timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                await result
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)


async def until(predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float = 3.0) -> None:
    """Wait until `predicate()` (awaited if async) is true (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        await asyncio.sleep(0.02)
