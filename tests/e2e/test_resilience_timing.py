"""Resilience end to end in time: full-jitter backoff between failovers, deadlines (the
`x-turnout-deadline-ms` header and a route's `deadline_s`), Retry-After keeping traffic off a
throttled target, and a route's timeouts overriding the provider's.

Every test runs real sims and a real gateway on loopback sockets and checks two views: what
the caller got (status, headers, body, time) and what each sim saw (its attempt log, whose
`t_start`/`t_end` are `time.monotonic()` in this same process). Many also read what the
gateway learned (`/admin/targets`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.builders import (
    N_WORDS,
    PROMPT,
    STALL_TIMEOUTS,
    GatewayFactory,
    Reply,
    SimFactory,
    admin_targets,
    answer_of,
    build_config,
    chat,
    error_of,
    expected,
    post,
    set_fault,
    start_pair,
)
from tests.waiting import eventually

DEADLINE_HEADER = "x-turnout-deadline-ms"


# --- full-jitter backoff between failovers --------------------------------------------------


async def test_failovers_are_spaced_by_full_jitter_backoff(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sims = {n: await sim_factory(n) for n in ("a", "b", "c")}
    for sim in sims.values():
        set_fault(sim, {"mode": "status", "status": 503})
    base, cap = 0.2, 0.3
    routes = [{"alias": "chat", "candidates": ["m@a", "m@b", "m@c"], "max_attempts": 3}]
    gw = await gateway_factory(
        build_config(
            sims,
            routes,
            resilience={"backoff_base_s": base, "backoff_cap_s": cap, "budget_min_retries": 1000},
            # nothing trips: every request makes its three attempts
            breaker={"consecutive_failures": 1000, "min_calls": 1000},
        )
    )
    n = 8
    replies = await asyncio.gather(
        *(post(http, gw, chat(PROMPT), {"X-Request-Id": f"jitter-{i}"}) for i in range(n))
    )
    for r in replies:
        error_of(r, 502, "all_candidates_failed")
        assert r.attempts == "3"
        assert r.elapsed < 2 * cap + 0.5
    margin = 0.1
    gaps: list[float] = []
    for i in range(n):
        seen = sorted(
            (a["t_start"], name)
            for name, sim in sims.items()
            for a in sim.state.attempts()
            if a["headers"]["x-request-id"] == f"jitter-{i}"
        )
        assert [name for _, name in seen] == ["a", "b", "c"]  # each target once, in rank order
        first, second = seen[1][0] - seen[0][0], seen[2][0] - seen[1][0]
        assert 0 <= first <= base + margin, first  # attempt 1 -> 2: uniform in [0, base]
        assert 0 <= second <= min(cap, 2 * base) + margin, second  # 2 -> 3: [0, min(cap, 2 base)]
        gaps += [first, second]
    assert max(gaps) <= cap + margin
    # Not all ~0: the expected mean is (0.1 + 0.15) / 2; full jitter spreads them.
    assert max(gaps) > 0.05
    assert 0.04 < sum(gaps) / len(gaps) < 0.25, gaps
    assert len({round(g, 2) for g in gaps}) > 3


# --- deadlines -----------------------------------------------------------------------------

DEADLINE_TIMEOUTS = {**STALL_TIMEOUTS, "headers_s": 2.0, "first_token_s": 2.0, "idle_s": 2.0}


@pytest.mark.parametrize("stream", [False, True])
async def test_client_deadline_header_ends_a_hung_attempt_with_504(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    stream: bool,
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, timeouts=DEADLINE_TIMEOUTS)
    set_fault(p, {"mode": "hang"})
    r = await post(http, gw, chat(PROMPT, stream=stream or None), {DEADLINE_HEADER: "300"})
    error = error_of(r, 504, "deadline_exceeded")
    assert error["type"] == "timeout_error"
    assert 0.25 <= r.elapsed < 0.8, r.elapsed  # the deadline, not headers_s (2 s)
    assert r.attempts == "1"

    async def hung_up() -> None:
        log = p.state.attempts()
        assert len(log) == 1
        assert log[0]["client_disconnected"] is True
        assert log[0]["t_end"] is not None

    await eventually(hung_up)
    assert p.state.attempts()[0]["t_end"] - r.started < 0.8
    assert b.state.attempts() == []  # no time was left for a failover

    health = await admin_targets(http, gw)
    assert health["m@p"]["consecutive_failures"] == 0  # the caller's deadline: neutral
    assert health["m@p"]["window_calls"] == 0
    assert health["m@p"]["in_flight"] == 0
    assert health["m@p"]["state"] == "closed"


async def test_deadline_after_a_failover_gives_504_and_charges_only_the_failure(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, timeouts=DEADLINE_TIMEOUTS)
    set_fault(p, {"mode": "status", "status": 503})
    set_fault(b, {"mode": "hang"})
    r = await post(http, gw, chat(PROMPT), {DEADLINE_HEADER: "400"})
    error_of(r, 504, "deadline_exceeded")
    assert 0.35 <= r.elapsed < 0.9, r.elapsed
    assert r.attempts == "2"
    assert [a["outcome"] for a in p.state.attempts()] == ["completed"]

    async def b_hung_up() -> None:
        log = b.state.attempts()
        assert len(log) == 1 and log[0]["client_disconnected"] is True

    await eventually(b_hung_up)
    health = await admin_targets(http, gw)
    assert health["m@p"]["consecutive_failures"] == 1
    assert health["m@b"]["consecutive_failures"] == 0
    assert health["m@b"]["window_calls"] == 0


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan", ""])
async def test_invalid_deadline_header_is_rejected_with_400(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    value: str,
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory)
    r = await post(http, gw, chat(PROMPT), {DEADLINE_HEADER: value})
    error = error_of(r, 400, None)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == DEADLINE_HEADER
    assert p.state.attempts() == [] and b.state.attempts() == []


async def test_route_deadline_applies_without_a_header_and_the_header_only_shortens_it(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(
        sim_factory, gateway_factory, route={"deadline_s": 0.3}, timeouts=DEADLINE_TIMEOUTS
    )
    set_fault(p, {"mode": "hang"})
    r = await post(http, gw, chat(PROMPT))
    error_of(r, 504, "deadline_exceeded")
    assert 0.25 <= r.elapsed < 0.8, r.elapsed
    # A longer client deadline does not lengthen the route's.
    r = await post(http, gw, chat(PROMPT), {DEADLINE_HEADER: "5000"})
    error_of(r, 504, "deadline_exceeded")
    assert 0.25 <= r.elapsed < 0.8, r.elapsed
    # A shorter one shortens it.
    r = await post(http, gw, chat(PROMPT), {DEADLINE_HEADER: "100"})
    error_of(r, 504, "deadline_exceeded")
    assert 0.08 <= r.elapsed < 0.25, r.elapsed

    async def all_hung_up() -> None:
        log = p.state.attempts()
        assert len(log) == 3
        assert all(a["client_disconnected"] for a in log)

    await eventually(all_hung_up)
    assert b.state.attempts() == []
    assert (await admin_targets(http, gw))["m@p"]["consecutive_failures"] == 0


# --- Retry-After ---------------------------------------------------------------------------


async def test_retry_after_keeps_traffic_off_the_primary_then_it_returns(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory)
    set_fault(p, {"mode": "status", "status": 429, "retry_after": 1, "count": 1})
    r = await post(http, gw, chat(PROMPT))
    assert answer_of(r, False) == expected("b")
    assert (r.target, r.attempts) == ("m@b", "2")
    assert r.elapsed < 0.5  # failed over at once, no waiting for the Retry-After
    health = await admin_targets(http, gw)
    assert health["m@p"]["throttled_until"] is not None
    assert health["m@p"]["consecutive_failures"] == 0  # throttling is not a breaker failure
    assert health["m@p"]["state"] == "closed"

    replies: list[Reply] = []
    deadline = time.monotonic() + 3.0
    while len(p.state.attempts()) < 2 and time.monotonic() < deadline:
        replies.append(await post(http, gw, chat(PROMPT)))
        await asyncio.sleep(0.03)
    log = p.state.attempts()
    assert len(log) == 2, "the primary never got traffic again"
    assert log[0]["status"] == 429
    quiet = log[1]["t_start"] - log[0]["t_end"]
    assert 0.9 <= quiet < 1.4, quiet
    assert replies[-1].target == "m@p" and replies[-1].attempts == "1"
    assert answer_of(replies[-1], False) == expected("p")
    # Every request in between went straight to b, without an attempt on p.
    assert len(replies) > 10
    for rep in replies[:-1]:
        assert (rep.status, rep.target, rep.attempts) == (200, "m@b", "1")
    assert len(b.state.attempts()) == len(replies)


# --- per-route timeouts --------------------------------------------------------------------


async def test_route_first_token_timeout_overrides_the_providers(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p = await sim_factory("p", n_words=N_WORDS)
    b = await sim_factory("b", n_words=N_WORDS)
    routes: list[dict[str, Any]] = [
        {"alias": "fast", "candidates": ["m@p", "m@b"], "timeouts": {"first_token_s": 0.3}},
        {"alias": "patient", "candidates": ["m@p", "m@b"]},  # the provider's 2 s
    ]
    timeouts = {**STALL_TIMEOUTS, "first_token_s": 2.0, "idle_s": 2.0}
    gw = await gateway_factory(build_config({"p": p, "b": b}, routes, timeouts=timeouts))
    set_fault(p, {"mode": "slow_first_token", "delay_s": 1.0})

    r = await post(http, gw, chat(PROMPT, model="fast", stream=True))
    assert answer_of(r, True) == expected("b")
    assert (r.target, r.attempts) == ("m@b", "2")
    assert 0.25 <= r.elapsed < 0.8, r.elapsed

    async def p_hung_up() -> None:
        log = p.state.attempts()
        assert len(log) == 1 and log[0]["client_disconnected"] is True
        assert log[0]["t_end"] - log[0]["t_start"] < 0.6

    await eventually(p_hung_up)
    assert (await admin_targets(http, gw))["m@p"]["consecutive_failures"] == 1

    r = await post(http, gw, chat(PROMPT, model="patient", stream=True))
    assert answer_of(r, True) == expected("p")
    assert (r.target, r.attempts) == ("m@p", "1")
    assert r.elapsed >= 0.95
    log = p.state.attempts()
    assert [a["outcome"] for a in log] == ["client_disconnected", "completed"]
    assert len(b.state.attempts()) == 1  # only the fast route's failover
    assert (await admin_targets(http, gw))["m@p"]["consecutive_failures"] == 0
