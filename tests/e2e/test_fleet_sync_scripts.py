"""The fleet's two scripts on a real Redis server (health/fleet_sync.py): what they store and
what a tick gets back — nothing while nothing changes, which is what makes a tick's cost grow
with changes instead of targets (issue 18, item 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from health.fleet_event import Keys
from health.fleet_sync import TICK, WRITE, Record, StateView
from tests.builders import RedisProcess

K = Keys("t")
GRACE_MS = 600_000


@pytest.fixture
async def r(redis_server: RedisProcess) -> AsyncIterator[Redis]:
    client = Redis(port=redis_server.port)
    try:
        yield client
    finally:
        await client.aclose()


async def write(r: Redis, *events: tuple[str, str, int, int]) -> None:
    args: list[object] = [GRACE_MS]
    for ev in events:
        args += list(ev)
    await r.eval(WRITE, 3, K.state, K.changes, K.meta, *args)  # type: ignore[misc]


async def tick(r: Redis, view: StateView, now_s: float = 0.0) -> list[object]:
    reply: list[object] = await r.eval(  # type: ignore[misc]
        TICK, 3, K.state, K.changes, K.meta, *view.args("epoch-1", now_s)
    )
    view.absorb(reply, now_s)
    return reply


async def test_a_trip_is_stored_on_the_servers_clock_and_only_lengthens(r: Redis) -> None:
    await write(r, ("trip", "a", 30_000, 2))
    server_s, _ = await r.time()
    rec = Record.decode(await r.hget(K.state, "a"))
    assert abs(rec.open_until - (server_s * 1000 + 30_000)) < 2_000
    assert rec.half_open_until == rec.open_until + GRACE_MS and rec.trips == 2
    await write(r, ("trip", "a", 1_000, 1))  # a late, shorter trip does not shorten it
    assert Record.decode(await r.hget(K.state, "a")) == rec
    await write(r, ("throttle", "a", 5_000, 0))
    throttled = Record.decode(await r.hget(K.state, "a"))
    assert throttled.throttle_until > 0 and throttled.open_until == rec.open_until
    await write(r, ("close", "a", 1, 0))
    closed = Record.decode(await r.hget(K.state, "a"))
    assert (closed.open_until, closed.half_open_until, closed.trips) == (0, 0, 0)
    assert closed.throttle_until == throttled.throttle_until  # a close is not a throttle's end


async def test_a_tick_gets_only_the_records_that_changed_since_the_last(r: Redis) -> None:
    await write(r, ("trip", "a", 30_000, 1), ("throttle", "b", 5_000, 0))
    view = StateView()
    first = await tick(r, view)
    assert first[3] == 1 and len(first) == 4 + 2 * 2  # the first tick reads everything
    assert view.version == 2
    quiet = await tick(r, view, 1.0)
    assert quiet[3] == 0 and len(quiet) == 4  # nothing changed: no record comes back
    await write(r, ("close", "a", 1, 0))
    changed = await tick(r, view, 2.0)
    assert changed[4:] == [b"a", b"0,0,0,0"]
    assert view.record("a").open_until == 0 and view.record("b").throttle_until > 0


async def test_redis_coming_back_empty_names_a_new_epoch_and_is_read_in_full(r: Redis) -> None:
    await write(r, ("trip", "a", 30_000, 1))
    view = StateView()
    await tick(r, view)
    assert view.epoch == "epoch-1"
    await r.flushall()
    reply: list[object] = await r.eval(  # type: ignore[misc]
        TICK, 3, K.state, K.changes, K.meta, *view.args("epoch-2", 1.0)
    )
    assert view.absorb(reply, 1.0)  # the epoch changed: re-publish what we know
    assert view.epoch == "epoch-2" and view.record("a").open_until == 0
