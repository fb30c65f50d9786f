"""gateway.upstream.pool.IdleReads on a real event loop and a real aiohttp StreamReader fed
by hand: silence while waiting expires it, time the caller spends between reads does not,
chunks in time keep it alive however long the body lasts, and the end of the attempt
expires it whatever arrives. One timer, re-armed only when it fires early."""

from __future__ import annotations

import asyncio
from unittest import mock

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from gateway.upstream.pool import IdleReads

IDLE_S = 0.08


def reader() -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(mock.Mock(spec=asyncio.Transport))  # "connected": readable
    return aiohttp.StreamReader(protocol, 2**16, loop=loop)


async def feed(content: aiohttp.StreamReader, chunks: int, every_s: float) -> None:
    for i in range(chunks):
        await asyncio.sleep(every_s)
        content.feed_data(b"x%d" % i)


async def test_chunks_in_time_keep_a_body_alive_long_past_idle_s() -> None:
    content = reader()
    loop = asyncio.get_running_loop()
    feeder = asyncio.create_task(feed(content, 12, IDLE_S / 3))  # 4 idle periods in all
    got = []
    started = loop.time()
    async with IdleReads(content, IDLE_S, started + 10) as reads:
        while len(got) < 12:
            got.append(await reads.next())
    await feeder
    assert got == [b"x%d" % i for i in range(12)]
    assert loop.time() - started > 3 * IDLE_S


async def test_silence_while_waiting_expires_after_idle_s_from_the_last_chunk() -> None:
    content = reader()
    loop = asyncio.get_running_loop()
    feeder = asyncio.create_task(feed(content, 4, IDLE_S / 2))
    last = 0.0
    with pytest.raises(TimeoutError):
        async with IdleReads(content, IDLE_S, loop.time() + 10) as reads:
            while True:
                await reads.next()
                last = loop.time()
    await feeder
    silent = loop.time() - last
    assert IDLE_S <= silent < IDLE_S + 0.5  # from the last chunk, not from the start


async def test_time_the_caller_spends_between_reads_is_not_idle() -> None:
    content = reader()
    loop = asyncio.get_running_loop()
    async with IdleReads(content, IDLE_S, loop.time() + 10) as reads:
        content.feed_data(b"a")
        assert await reads.next() == b"a"
        await asyncio.sleep(3 * IDLE_S)  # a slow client being written to
        content.feed_data(b"b")
        assert await reads.next() == b"b"
        content.feed_eof()
        assert await reads.next() == b""


async def test_the_attempt_s_end_expires_it_whatever_arrives() -> None:
    content = reader()
    loop = asyncio.get_running_loop()
    feeder = asyncio.create_task(feed(content, 100, IDLE_S / 4))
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with IdleReads(content, IDLE_S, started + 2.5 * IDLE_S) as reads:
            while True:
                await reads.next()
    feeder.cancel()
    assert 2.5 * IDLE_S <= loop.time() - started < 2.5 * IDLE_S + 0.5


async def test_a_steady_stream_arms_the_timer_once_per_idle_period_not_per_chunk() -> None:
    content = reader()
    loop = asyncio.get_running_loop()
    feeder = asyncio.create_task(feed(content, 20, IDLE_S / 10))  # 20 chunks in 2 periods
    with mock.patch.object(loop, "call_at", wraps=loop.call_at) as call_at:
        async with IdleReads(content, IDLE_S, loop.time() + 10) as reads:
            for _ in range(20):
                await reads.next()
    await feeder
    armed = [c for c in call_at.call_args_list if getattr(c.args[1], "__name__", "") == "_look"]
    assert 1 <= len(armed) <= 4  # was two per chunk (40); the feeder's sleeps are not counted
