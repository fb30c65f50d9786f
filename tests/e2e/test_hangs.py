"""A provider that stops answering, end to end (issue 14, parts 5 and 6): real sims, a real
gateway, loopback sockets.

- Under steady load, a primary that starts hanging is passed over by new requests as soon as
  requests have waited on it past its limit with nothing coming back (`health.hang`), long
  before the first timeout fires; the requests stuck on it fail over when their timers fire,
  and even a tight retry budget does not turn them away.
- Adaptive first-token limits (`timeouts.adaptive`): a slow but healthy target is not cut by
  a fixed limit it would exceed, and a hanging one is cut far sooner than its fixed limit.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from gateway.config import load_data
from tests.builders import (
    GatewayFactory,
    Reply,
    SimFactory,
    admin_targets,
    answer_of,
    chat,
    post,
    set_fault,
)
from tests.waiting import eventually, until

TIMEOUT_S = 1.5  # the first-byte limits of the hang test
HANG_TIMEOUTS = {
    "connect_s": 1.0,
    "headers_s": TIMEOUT_S,
    "first_token_s": TIMEOUT_S,
    "idle_s": TIMEOUT_S,
    "total_s": 10.0,
}


async def test_a_primary_that_starts_hanging_under_steady_load_is_passed_over_at_once(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    primary, fallback = await sim_factory("primary"), await sim_factory("fallback")
    # Its usual first token takes milliseconds: the limit is the floor, 0.3 s. Three retries
    # per 10 s at most: only the rule for requests stuck behind a dead target lets all of
    # theirs through.
    config = load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "providers": {
                n: {"base_url": s.base_url, "timeouts": HANG_TIMEOUTS}
                for n, s in (("primary", primary), ("fallback", fallback))
            },
            "routes": [{"alias": "m", "candidates": ["m@primary", "m@fallback"]}],
            "resilience": {
                "same_target_retries": 0,
                "budget_ratio": 0,
                "budget_min_retries": 3,
            },
            "health": {"hang": {"floor_s": 0.3}},
        },
        env={},
    )
    gw = await gateway_factory(config)
    body = chat(model="m", stream=True)
    replies: list[Reply] = []

    async def one() -> None:
        replies.append(await post(http, gw, body))

    async def load(seconds: float, every_s: float = 0.025) -> list[asyncio.Task[None]]:
        tasks = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # open loop: ~40 requests a second, whatever happens
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(every_s)
        return tasks

    warm = await load(1.0)
    await asyncio.gather(*warm)
    assert all(r.target == "m@primary" for r in replies)  # healthy: the primary serves all

    seen: list[str] = []

    async def not_answering() -> None:
        view = (await admin_targets(http, gw))["m@primary"]
        why = view["unavailable"] or ""
        seen.append(why)
        assert why.startswith("not answering"), view

    set_fault(primary, {"mode": "hang"})
    hung_at = time.monotonic()
    running = asyncio.create_task(load(3.0))
    # Visible to operators before any timeout fired (the breaker has seen no failure yet).
    await eventually(not_answering, timeout_s=TIMEOUT_S)
    assert time.monotonic() - hung_at < TIMEOUT_S
    tasks = await running
    await asyncio.gather(*tasks)

    # No caller got an error: a healthy candidate existed the whole time.
    assert [r.status for r in replies if r.status != 200] == []
    for r in replies:
        answer_of(r, stream=True)
    after = [r for r in replies if r.started >= hung_at]
    # Requests sent once the hang was detectable (0.3 s of silence; 0.7 s of slack) went to
    # the fallback at once: one attempt, far below the 1.5 s timeout.
    later = [r for r in after if r.started > hung_at + 1.0]
    assert len(later) > 40
    assert all(r.target == "m@fallback" and r.attempts == "1" for r in later)
    assert max(r.elapsed for r in later) < TIMEOUT_S / 2
    # The requests stuck on the primary paid its timeout, then failed over: a handful, not
    # everything sent until the breaker tripped.
    stuck = [r for r in after if r.attempts == "2"]
    assert stuck and all(r.target == "m@fallback" for r in stuck)
    assert all(r.elapsed >= TIMEOUT_S for r in stuck)
    assert all(r.started < hung_at + 1.0 for r in stuck)
    assert len(stuck) < 0.5 * TIMEOUT_S / 0.025  # under half of the requests of one timeout


ADAPTIVE = {"enabled": True, "factor": 4.0, "floor_s": 0.5, "cap_s": 5.0}


async def test_adaptive_limits_spare_a_slow_target_and_cut_a_hanging_one_early(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    slow, dead, backup = [await sim_factory(n) for n in ("slow", "dead", "backup")]
    tight = {"connect_s": 1.0, "headers_s": 0.6, "first_token_s": 0.6, "idle_s": 0.6}
    long = {"connect_s": 1.0, "headers_s": 10.0, "first_token_s": 10.0, "idle_s": 10.0}
    config = load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "providers": {
                # A fixed 0.6 s would cut a 0.8 s first token; a fixed 10 s waits out a hang.
                "slow": {"base_url": slow.base_url, "timeouts": {**tight, "adaptive": ADAPTIVE}},
                "dead": {"base_url": dead.base_url, "timeouts": {**long, "adaptive": ADAPTIVE}},
                "backup": {"base_url": backup.base_url, "timeouts": long},
            },
            "routes": [
                {"alias": "slow", "candidates": ["m@slow", "m@backup"]},
                {"alias": "dead", "candidates": ["m@dead", "m@backup"]},
            ],
            "resilience": {"same_target_retries": 0},
        },
        env={},
    )
    gw = await gateway_factory(config)

    # History: the slow target's first tokens take 0.3 s (p95 0.3 s -> limit 1.2 s), the
    # other's a few milliseconds (-> the 0.5 s floor).
    set_fault(slow, {"mode": "slow_first_token", "delay_s": 0.3})
    warm = await asyncio.gather(
        *(post(http, gw, chat(model=a, stream=True)) for a in ("slow", "dead") for _ in range(6))
    )
    assert all(r.status == 200 for r in warm)
    assert {r.target for r in warm} == {"m@slow", "m@dead"}

    # Slower than the fixed 0.6 s, within p95 x factor: answered by the slow target itself.
    set_fault(slow, {"mode": "slow_first_token", "delay_s": 0.8})
    for _ in range(3):
        r = await post(http, gw, chat(model="slow", stream=True))
        answer_of(r, stream=True)
        assert (r.target, r.attempts) == ("m@slow", "1"), r.headers
        assert r.elapsed >= 0.8

    # A hang is cut at the adaptive 0.5 s, not the fixed 10 s, and fails over.
    set_fault(dead, {"mode": "hang"})
    r = await post(http, gw, chat(model="dead", stream=True))
    answer_of(r, stream=True)
    assert (r.target, r.attempts) == ("m@backup", "2"), r.headers
    assert r.elapsed < 2.5  # 0.5 s on the dead one, then the backup's answer

    async def dead_failed() -> bool:
        return (await admin_targets(http, gw))["m@dead"]["consecutive_failures"] >= 1

    await until(dead_failed)
