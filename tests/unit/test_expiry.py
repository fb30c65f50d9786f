"""gateway.upstream.expiry.Expiry on a real event loop: the attempt's timer behaves as
`asyncio.timeout_at` does - late is TimeoutError, in time is nothing, and a cancel from
elsewhere (the client leaving, a lost hedge) stays a cancel."""

from __future__ import annotations

import asyncio

import pytest

from gateway.upstream.expiry import Expiry


async def test_a_block_past_its_time_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), Expiry(loop, started + 0.05):
        await asyncio.sleep(5)
    assert 0.05 <= loop.time() - started < 1.0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # its own cancel taken back


async def test_a_block_in_time_is_left_alone_and_its_timer_does_not_fire_later() -> None:
    loop = asyncio.get_running_loop()
    with Expiry(loop, loop.time() + 0.05) as expiry:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # past the deadline: nothing cancels this task
    assert not expiry.expired


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def attempt() -> None:
        with Expiry(loop, loop.time() + 5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(attempt())
    await entered.wait()
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_both_at_once_the_outside_cancel_wins() -> None:
    """The timer fired and the client left in the same instant: not a timeout (the
    attempt's outcome is the client's), as with asyncio.timeout."""
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.02

    async def attempt() -> None:
        me = asyncio.current_task()
        assert me is not None
        with Expiry(loop, when):
            loop.call_at(when, me.cancel)  # after the expiry's own: same instant
            await asyncio.sleep(5)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(attempt())


async def test_an_outer_asyncio_timeout_still_sees_its_own_expiry() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.03):
            with Expiry(loop, loop.time() + 5):
                await asyncio.sleep(5)
