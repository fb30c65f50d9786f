"""Resilience end to end when targets keep failing: a total outage at a high rate makes no
retry storm (the retry budget, breakers opening), a flapping primary is probed once, recovers
and reopens for longer, and with everything open panic makes one attempt on the least-bad
target.

Every test runs real sims and a real gateway on loopback sockets and checks two views: what
the caller got (status, headers, body, time) and what each sim saw (its attempt log, whose
`t_start`/`t_end` are `time.monotonic()` in this same process). Many also read what the
gateway learned (`/admin/targets`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from gateway.edge.server import Server
from gateway.sim import SimServer
from tests.builders import (
    PROMPT,
    GatewayFactory,
    Reply,
    SimFactory,
    admin_targets,
    answer_of,
    build_config,
    chat,
    error_of,
    expected,
    last_seq,
    post,
    set_fault,
    start_pair,
)
from tests.waiting import eventually


def open_duration(t: dict[str, Any]) -> float:
    """How long the target's breaker was opened for, from one /admin/targets view."""
    assert t["state"] == "open", t
    assert t["last_transition"]["to"] == "open", t
    return float(t["open_until"] - t["last_transition"]["at"])


# --- total outage: no retry storm ----------------------------------------------------------


async def test_total_outage_at_a_high_rate_makes_no_retry_storm(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sims = {n: await sim_factory(n) for n in ("a", "b", "c")}
    for sim in sims.values():
        set_fault(sim, {"mode": "status", "status": 503})
    routes = [{"alias": "chat", "candidates": ["m@a", "m@b", "m@c"]}]
    # A long open time: no breaker may reach half-open while the burst runs.
    gw = await gateway_factory(build_config(sims, routes, breaker={"open_s": 30.0}))
    n_requests, concurrency = 300, 20
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Reply:
        async with gate:
            return await post(http, gw, chat(PROMPT), {"X-Request-Id": f"storm-{i}"})

    started = time.monotonic()
    replies = await asyncio.gather(*(one(i) for i in range(n_requests)))
    burst_s = time.monotonic() - started
    assert burst_s < 10.0

    by_status: dict[int, int] = {}
    for r in replies:
        by_status[r.status] = by_status.get(r.status, 0) + 1
        if r.status == 502:
            error = error_of(r, 502, "all_candidates_failed")
            assert error["type"] == "upstream_error"
        else:
            error = error_of(r, 503, "no_candidate_available")
            assert error["type"] == "service_unavailable"
            assert int(r.headers["retry-after"]) >= 1
        assert 0 <= int(r.headers["x-turnout-attempts"]) <= 3
    assert set(by_status) <= {502, 503}
    assert by_status.get(503, 0) > n_requests // 2  # once everything is open: fast 503s

    upstream = sum(len(s.state.attempts()) for s in sims.values())
    floor = 10  # resilience.budget_min_retries (default)
    assert upstream <= 1.2 * n_requests + floor, (upstream, by_status)
    # Every attempt the sims saw belongs to one of our requests, and the header counts agree.
    seen = [a["headers"]["x-request-id"] for s in sims.values() for a in s.state.attempts()]
    assert all(rid.startswith("storm-") for rid in seen)
    assert len(seen) == sum(int(r.headers["x-turnout-attempts"]) for r in replies)

    health = await admin_targets(http, gw)
    for tid in ("m@a", "m@b", "m@c"):
        assert health[tid]["state"] == "open", health[tid]
        assert health[tid]["in_flight"] == 0


# --- a flapping provider -------------------------------------------------------------------

FLAP_BREAKER: dict[str, Any] = {
    "consecutive_failures": 3,
    "open_s": 0.5,
    "jitter": 0.0,
    "half_open_successes": 1,
    "slow_start_s": 0,  # traffic back at once (the ramp has its own test below)
}


async def _trip_primary(
    http: aiohttp.ClientSession, gw: Server, p: SimServer, b: SimServer
) -> dict[str, Any]:
    """Make p fail until its breaker opens (every request still served by b); p's view."""
    set_fault(p, {"mode": "status", "status": 503})
    for _ in range(FLAP_BREAKER["consecutive_failures"]):
        r = await post(http, gw, chat(PROMPT))
        assert answer_of(r, False) == expected("b")
        assert (r.target, r.attempts) == ("m@b", "2")
    health = await admin_targets(http, gw)
    assert health["m@p"]["state"] == "open"
    return health["m@p"]


async def _traffic(
    http: aiohttp.ClientSession, gw: Server, workers: int, until: Callable[[], bool], limit_s: float
) -> list[Reply]:
    """`workers` callers in a loop (a request each ~10 ms) until `until()` or `limit_s`."""
    replies: list[Reply] = []
    deadline = time.monotonic() + limit_s

    async def worker() -> None:
        while not until() and time.monotonic() < deadline:
            replies.append(await post(http, gw, chat(PROMPT)))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return replies


async def test_flapping_primary_is_probed_once_recovers_and_opens_again(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, breaker=FLAP_BREAKER)
    first = await _trip_primary(http, gw, p, b)
    assert open_duration(first) == pytest.approx(0.5, abs=0.01)
    tripped_at = p.state.attempts()[-1]["t_end"]
    before_probe = last_seq(p)

    # Recovery: the probe (the first request after the open time) answers in 0.3 s; meanwhile
    # concurrent traffic must go to b, and no second request may reach p.
    set_fault(p, {"mode": "slow_first_token", "delay_s": 0.3, "count": 1})

    def back_on_p() -> bool:
        return len(p.state.attempts(since=before_probe)) >= 6

    replies = await _traffic(http, gw, workers=5, until=back_on_p, limit_s=4.0)
    assert back_on_p(), "traffic did not come back to the primary"
    assert all(r.status == 200 for r in replies)
    on_p = p.state.attempts(since=before_probe)
    probe, after = on_p[0], on_p[1:]
    assert probe["outcome"] == "completed" and probe["fault"] == "slow_first_token"
    assert probe["t_start"] - tripped_at >= 0.45  # not before the open time ran out
    assert probe["t_start"] - tripped_at < 1.0
    # Exactly one probe: nothing else reached p until the probe had answered.
    assert all(a["t_start"] >= probe["t_end"] for a in after), [a["t_start"] for a in after]
    # ... while the other callers were served by b, which took the load during the probe.
    during = [a for a in b.state.attempts() if probe["t_start"] < a["t_start"] < probe["t_end"]]
    assert during
    # The breaker closed on the probe's success: traffic is back on p at once.
    assert after[0]["t_start"] - probe["t_end"] < 0.5
    assert [r.target for r in replies].count("m@p") >= 5
    health = await admin_targets(http, gw)
    assert health["m@p"]["state"] == "closed"
    assert health["m@p"]["last_transition"]["reason"] == "probes succeeded"

    # It fails again: the breaker opens again (b serves every request meanwhile).
    second = await _trip_primary(http, gw, p, b)
    d2 = open_duration(second)
    assert d2 >= 0.5 - 0.01

    # A failed probe reopens it for as long as this outage's trip (flapping doubled that; a
    # failed probe goes on probing at the same cadence; before issue 14 it doubled again).
    before_probe = last_seq(p)
    reopened_at = p.state.attempts()[-1]["t_end"]

    def probed() -> bool:
        return len(p.state.attempts(since=before_probe)) >= 1

    replies = await _traffic(http, gw, workers=3, until=probed, limit_s=d2 + 1.5)
    assert probed()
    assert all(r.status == 200 and r.target == "m@b" for r in replies)

    async def reopened() -> None:
        t = (await admin_targets(http, gw))["m@p"]
        assert t["last_transition"]["reason"] == "probe failed"
        assert open_duration(t) == pytest.approx(d2, abs=0.02)

    await eventually(reopened)
    failed_probe = p.state.attempts(since=before_probe)
    assert len(failed_probe) == 1
    assert failed_probe[0]["t_start"] - reopened_at >= d2 - 0.05


async def test_flapping_primary_reopens_for_longer_than_the_first_time(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, breaker=FLAP_BREAKER)
    d1 = open_duration(await _trip_primary(http, gw, p, b))
    set_fault(p, {"mode": "ok"})
    before = last_seq(p)

    def recovered() -> bool:
        return len(p.state.attempts(since=before)) >= 2

    await _traffic(http, gw, workers=1, until=recovered, limit_s=d1 + 1.5)
    assert recovered()
    assert (await admin_targets(http, gw))["m@p"]["state"] == "closed"
    d2 = open_duration(await _trip_primary(http, gw, p, b))  # down again within ~0.1 s
    assert d2 > d1 * 1.5, (d1, d2)


async def test_an_outage_is_probed_steadily_and_traffic_ramps_back_after_recovery(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The fault suite's failing case, scaled down (issue 14): the primary answers 503 for a
    while under steady traffic, then recovers. Before, each failed probe doubled the open time
    and the recovered primary got no traffic for the rest of the run."""
    breaker = {**FLAP_BREAKER, "half_open_successes": 2, "slow_start_s": 2.0}
    p, b, gw = await start_pair(sim_factory, gateway_factory, breaker=breaker)
    await _trip_primary(http, gw, p, b)
    outage_s = 2.5  # five open times: four failed probes at least
    down_until = time.monotonic() + outage_s
    replies: list[tuple[float, Reply]] = []

    async def steady(until_s: float) -> None:
        while time.monotonic() < until_s:
            began = time.monotonic()
            if began >= down_until and p.state.fault.mode != "ok":
                set_fault(p, {"mode": "ok"})
            replies.append((began, await post(http, gw, chat(PROMPT))))
            await asyncio.sleep(0.02)

    before = last_seq(p)
    await steady(down_until + 4.0)
    assert all(r.status == 200 for _, r in replies), [r.status for _, r in replies]
    on_p = [t for t, r in replies if r.target == "m@p"]
    assert on_p, "the primary never got traffic back"
    # Back within about one open time of recovering (0.5 s; generous for a loaded machine).
    assert on_p[0] - down_until < 1.5, on_p[0] - down_until
    # Probed on a steady cadence during the outage: about one attempt per open time.
    probes = [a for a in p.state.attempts(since=before) if a["t_start"] < down_until]
    assert 2 <= len(probes) <= outage_s / 0.5 + 2, len(probes)
    # Slow start: the primary's share grows over the ramp, then it takes all of it.
    closed = (await admin_targets(http, gw))["m@p"]["last_transition"]
    assert closed["to"] == "closed" and closed["reason"] == "probes succeeded"

    def share(lo: float, hi: float) -> float:
        window = [r.target for t, r in replies if on_p[0] + lo <= t < on_p[0] + hi]
        return window.count("m@p") / max(1, len(window))

    assert share(0.0, 0.6) < share(1.5, 2.5)
    assert share(2.6, 4.0) > 0.9


# --- panic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("healthy", [True, False], ids=["recovered", "still-down"])
async def test_panic_makes_one_attempt_on_the_least_bad_target(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    healthy: bool,
) -> None:
    breaker = {"consecutive_failures": 2, "open_s": 10.0, "jitter": 0.0}
    p, b, gw = await start_pair(sim_factory, gateway_factory, breaker=breaker)
    # Trip p first (b answers), then b: p opened first, so it may recover first: least bad.
    set_fault(p, {"mode": "status", "status": 503})
    for _ in range(2):
        assert (await post(http, gw, chat(PROMPT))).target == "m@b"
    await asyncio.sleep(0.05)
    set_fault(b, {"mode": "status", "status": 503})
    for _ in range(2):
        r = await post(http, gw, chat(PROMPT))
        error_of(r, 502, "all_candidates_failed")
        assert r.attempts == "1"  # p is open: skipped without an attempt
    health = await admin_targets(http, gw)
    assert health["m@p"]["state"] == health["m@b"]["state"] == "open"
    assert health["m@p"]["open_until"] < health["m@b"]["open_until"]
    p_seen, b_seen = last_seq(p), last_seq(b)
    assert (p_seen, b_seen) == (2, 4)

    if healthy:
        set_fault(p, {"mode": "ok"})
    r = await post(http, gw, chat(PROMPT))
    assert r.attempts == "1"
    if healthy:
        assert answer_of(r, False) == expected("p")
        assert r.target == "m@p"
    else:
        error = error_of(r, 503, "no_candidate_available")
        assert "last-resort attempt failed" in error["message"]
        assert 8 <= int(r.headers["retry-after"]) <= 11  # p's open time left (10 s)
    new_on_p = p.state.attempts(since=p_seen)
    assert len(new_on_p) == 1  # exactly one attempt, on the least-bad target
    assert new_on_p[0]["status"] == (200 if healthy else 503)
    assert b.state.attempts(since=b_seen) == []
    health = await admin_targets(http, gw)
    assert health["m@p"]["in_flight"] == 0
    assert health["m@b"]["state"] == "open"
