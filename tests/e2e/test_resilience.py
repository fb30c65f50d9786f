"""The resilience engine end to end: retry budget, breakers that flap, full-jitter backoff,
deadlines, Retry-After, per-route timeouts, context-length fallback, hedging, panic and
broken streams.

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
import orjson
import pytest

from gateway.config import Config, load_data
from gateway.server import Server
from gateway.sim import SimServer
from gateway.sim.answers import answer_text
from gateway.sim.endpoints import error_reply
from tests.builders import (
    STALL_TIMEOUTS,
    GatewayFactory,
    Reply,
    SimFactory,
    admin_targets,
    answer_of,
    chat,
    post,
    set_fault,
    sse_events,
)
from tests.waiting import eventually

PROMPT = "how do breakers work"
N_WORDS = 6
DEADLINE_HEADER = "x-turnout-deadline-ms"
ERROR_KEYS = {"message", "type", "code", "param"}


# --- helpers ----------------------------------------------------------------------------------


def build_config(
    sims: dict[str, SimServer],
    routes: list[dict[str, Any]],
    *,
    timeouts: dict[str, float] | None = None,
    targets: dict[str, Any] | None = None,
    resilience: dict[str, Any] | None = None,
    breaker: dict[str, Any] | None = None,
) -> Config:
    """One provider per sim (named like it); routes and targets written out in full."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {
            name: {
                "base_url": sim.base_url,
                "api_key": f"key-{name}",
                "timeouts": timeouts or STALL_TIMEOUTS,
            }
            for name, sim in sims.items()
        },
        "routes": routes,
    }
    if targets is not None:
        data["targets"] = targets
    if resilience is not None:
        data["resilience"] = resilience
    if breaker is not None:
        data["health"] = {"breaker": breaker}
    return load_data(data, env={})


def expected(sim: str, model: str = "m") -> str:
    return answer_text(sim, model, PROMPT, N_WORDS)


def error_of(reply: Reply, status: int, code: str | None) -> dict[str, Any]:
    """The OpenAI-shaped error of `reply`, checked for status, shape and code."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def open_duration(t: dict[str, Any]) -> float:
    """How long the target's breaker was opened for, from one /admin/targets view."""
    assert t["state"] == "open", t
    assert t["last_transition"]["to"] == "open", t
    return float(t["open_until"] - t["last_transition"]["at"])


def last_seq(sim: SimServer) -> int:
    log = sim.state.attempts()
    return int(log[-1]["seq"]) if log else 0


async def start_pair(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    route: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[SimServer, SimServer, Server]:
    """Sims `p` (primary) and `b` (backup), and a gateway with route `chat: [m@p, m@b]`."""
    p = await sim_factory("p", n_words=N_WORDS)
    b = await sim_factory("b", n_words=N_WORDS)
    routes = [{"alias": "chat", "candidates": ["m@p", "m@b"], **(route or {})}]
    gw = await gateway_factory(build_config({"p": p, "b": b}, routes, **kwargs))
    return p, b, gw


# --- 1. total outage: no retry storm ----------------------------------------------------------


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


# --- 2. a flapping provider -------------------------------------------------------------------

FLAP_BREAKER: dict[str, Any] = {
    "consecutive_failures": 3,
    "open_s": 0.5,
    "jitter": 0.0,
    "half_open_successes": 1,
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

    # A failed probe opens it for twice as long (consecutive trips double the open time).
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
        assert open_duration(t) == pytest.approx(2 * d2, abs=0.02)

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


# --- 3. full-jitter backoff between failovers --------------------------------------------------


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


# --- 4. deadlines -----------------------------------------------------------------------------

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


# --- 5. Retry-After ---------------------------------------------------------------------------


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


# --- 6. per-route timeouts --------------------------------------------------------------------


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


# --- 7. context length ------------------------------------------------------------------------

CONTEXT_TARGETS = {
    "small": {"provider": "p", "model": "m-small", "context_window": 8192},
    "big": {"provider": "b", "model": "m-big", "context_window": 128000},
}
CONTEXT_MESSAGE = "This model's maximum context length is 8192 tokens."


def context_fault(sim: SimServer) -> bytes:
    """Make `sim` answer 400 context_length_exceeded; returns the exact body it sends."""
    set_fault(sim, {"mode": "status", "status": 400, "code": "context_length_exceeded",
                    "message": CONTEXT_MESSAGE})  # fmt: skip
    return error_reply(400, CONTEXT_MESSAGE, code="context_length_exceeded").body


async def test_context_length_error_goes_to_a_larger_context_candidate(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p = await sim_factory("p", n_words=N_WORDS)
    b = await sim_factory("b", n_words=N_WORDS)
    routes = [{"alias": "chat", "candidates": ["small", "big"]}]
    gw = await gateway_factory(build_config({"p": p, "b": b}, routes, targets=CONTEXT_TARGETS))
    context_fault(p)
    r = await post(http, gw, chat(PROMPT))
    assert answer_of(r, False) == expected("b", "m-big")
    assert (r.target, r.attempts) == ("big", "2")
    assert r.json()["model"] == "m-big"
    assert [(a["status"], a["model"]) for a in p.state.attempts()] == [(400, "m-small")]
    assert [(a["status"], a["model"]) for a in b.state.attempts()] == [(200, "m-big")]
    health = await admin_targets(http, gw)
    assert health["small"]["consecutive_failures"] == 0  # a caller error: neutral
    assert health["small"]["window_calls"] == 0


@pytest.mark.parametrize("candidates", [["big", "small"], ["big"]], ids=["smaller", "alone"])
async def test_context_length_error_without_a_larger_candidate_passes_through(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    candidates: list[str],
) -> None:
    p = await sim_factory("p", n_words=N_WORDS)
    b = await sim_factory("b", n_words=N_WORDS)
    routes = [{"alias": "chat", "candidates": candidates}]
    gw = await gateway_factory(build_config({"p": p, "b": b}, routes, targets=CONTEXT_TARGETS))
    body = context_fault(b)
    r = await post(http, gw, chat(PROMPT))
    assert r.status == 400
    assert r.body == body  # the provider's error, byte for byte
    assert r.headers["content-type"].startswith("application/json")
    assert (r.target, r.attempts) == ("big", "1")
    assert [a["status"] for a in b.state.attempts()] == [400]
    assert p.state.attempts() == []  # the smaller model was not tried
    assert (await admin_targets(http, gw))["big"]["consecutive_failures"] == 0


async def test_context_length_error_passes_through_when_the_larger_candidate_is_open(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p = await sim_factory("p", n_words=N_WORDS)
    b = await sim_factory("b", n_words=N_WORDS)
    routes = [
        {"alias": "chat", "candidates": ["small", "big"]},
        {"alias": "big-only", "candidates": ["big"]},
    ]
    breaker = {"consecutive_failures": 2, "open_s": 30.0, "jitter": 0.0}
    gw = await gateway_factory(
        build_config({"p": p, "b": b}, routes, targets=CONTEXT_TARGETS, breaker=breaker)
    )
    set_fault(b, {"mode": "status", "status": 503})
    for _ in range(2):
        error_of(await post(http, gw, chat(PROMPT, model="big-only")), 502, "all_candidates_failed")
    assert (await admin_targets(http, gw))["big"]["state"] == "open"
    b_seen = last_seq(b)

    body = context_fault(p)
    r = await post(http, gw, chat(PROMPT))
    assert r.status == 400
    assert r.body == body  # small's own error: no larger candidate can take the prompt now
    assert (r.target, r.attempts) == ("small", "1")
    assert [a["status"] for a in p.state.attempts()] == [400]
    assert b.state.attempts(since=b_seen) == []


# --- 8. hedging -------------------------------------------------------------------------------

HEDGE_TIMEOUTS = {**STALL_TIMEOUTS, "headers_s": 5.0, "first_token_s": 5.0, "idle_s": 5.0}


@pytest.mark.parametrize("stream", [False, True])
async def test_hedge_answers_from_the_backup_and_cancels_the_slow_primary(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    stream: bool,
) -> None:
    p, b, gw = await start_pair(
        sim_factory, gateway_factory, route={"hedge": {"after": 0.2}}, timeouts=HEDGE_TIMEOUTS
    )
    set_fault(p, {"mode": "slow_first_token", "delay_s": 2.0})
    r = await post(http, gw, chat(PROMPT, stream=stream or None))
    assert answer_of(r, stream) == expected("b")
    assert (r.target, r.attempts) == ("m@b", "2")
    assert 0.18 <= r.elapsed < 0.8, r.elapsed  # well under the primary's 2 s

    b_log = b.state.attempts()
    assert len(b_log) == 1 and b_log[0]["outcome"] == "completed"
    assert b_log[0]["t_start"] - r.started >= 0.18  # the hedge waited for `after`

    async def loser_closed() -> None:
        log = p.state.attempts()
        assert len(log) == 1
        assert log[0]["client_disconnected"] is True
        assert log[0]["t_end"] is not None

    await eventually(loser_closed)
    p_log = p.state.attempts()[0]
    assert p_log["t_start"] <= b_log[0]["t_start"]
    assert p_log["t_end"] - b_log[0]["t_end"] < 0.3  # cancelled as soon as b won

    async def settled() -> None:
        health = await admin_targets(http, gw)
        assert health["m@p"]["in_flight"] == health["m@b"]["in_flight"] == 0
        assert health["m@p"]["consecutive_failures"] == 0  # the loser is not charged
        assert health["m@p"]["window_calls"] == 0
        assert health["m@p"]["state"] == "closed"
        assert health["m@b"]["window_calls"] == 1

    await eventually(settled)


async def test_hedge_lost_by_the_backup_is_cancelled_and_not_charged(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The primary is late (0.4 s) but the hedge is later still (2 s): the primary wins."""
    p, b, gw = await start_pair(
        sim_factory, gateway_factory, route={"hedge": {"after": 0.2}}, timeouts=HEDGE_TIMEOUTS
    )
    set_fault(p, {"mode": "slow_first_token", "delay_s": 0.4})
    set_fault(b, {"mode": "slow_first_token", "delay_s": 2.0})
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert answer_of(r, True) == expected("p")
    assert (r.target, r.attempts) == ("m@p", "2")
    assert 0.35 <= r.elapsed < 0.9, r.elapsed

    async def loser_closed() -> None:
        log = b.state.attempts()
        assert len(log) == 1 and log[0]["client_disconnected"] is True

    await eventually(loser_closed)
    p_log, b_log = p.state.attempts(), b.state.attempts()
    assert [a["outcome"] for a in p_log] == ["completed"]
    assert b_log[0]["t_start"] - p_log[0]["t_start"] >= 0.18
    assert b_log[0]["t_end"] - r.started < 0.9  # closed when p's first token came, not at 2 s

    async def settled() -> None:
        health = await admin_targets(http, gw)
        assert health["m@b"]["in_flight"] == health["m@p"]["in_flight"] == 0
        assert health["m@b"]["consecutive_failures"] == 0
        assert health["m@b"]["window_calls"] == 0
        assert health["m@p"]["window_calls"] == 1
        assert health["m@p"]["consecutive_failures"] == 0

    await eventually(settled)


@pytest.mark.parametrize("stream", [False, True])
async def test_no_hedge_when_the_primary_answers_in_time(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    stream: bool,
) -> None:
    p, b, gw = await start_pair(
        sim_factory, gateway_factory, route={"hedge": {"after": 0.2}}, timeouts=HEDGE_TIMEOUTS
    )
    for _ in range(3):
        r = await post(http, gw, chat(PROMPT, stream=stream or None))
        assert answer_of(r, stream) == expected("p")
        assert (r.target, r.attempts) == ("m@p", "1")
    assert [a["outcome"] for a in p.state.attempts()] == ["completed"] * 3
    assert b.state.attempts() == []


# --- 9. panic ---------------------------------------------------------------------------------


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


# --- 10. broken streams -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "p_outcome"),
    [
        pytest.param({"mode": "malformed", "after_chunks": 0}, "malformed", id="malformed"),
        pytest.param({"mode": "cut", "after_chunks": 1}, "cut", id="cut-after-role"),
    ],
)
async def test_broken_stream_before_the_first_token_fails_over(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
    p_outcome: str,
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory)
    set_fault(p, fault)
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert answer_of(r, True) == expected("b")
    assert (r.target, r.attempts) == ("m@b", "2")
    assert [a["outcome"] for a in p.state.attempts()] == [p_outcome]
    assert [a["outcome"] for a in b.state.attempts()] == ["completed"]
    assert (await admin_targets(http, gw))["m@p"]["consecutive_failures"] == 1


@pytest.mark.parametrize(
    ("fault", "p_outcome"),
    [
        pytest.param({"mode": "malformed", "after_chunks": 3}, "malformed", id="malformed"),
        pytest.param({"mode": "cut", "after_chunks": 3}, "cut", id="cut"),
    ],
)
async def test_broken_stream_after_the_first_byte_ends_with_an_error_event(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
    p_outcome: str,
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory)
    set_fault(p, fault)
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert r.status == 200
    assert (r.target, r.attempts) == ("m@p", "1")
    events = sse_events(r.body)
    assert (None, "[DONE]") not in events
    name, data = events[-1]
    assert name == "error"
    error = orjson.loads(data)["error"]
    assert set(error) == ERROR_KEYS
    assert error["code"] == f"upstream_{p_outcome}"
    # What did arrive is p's partial answer, never b's.
    text = "".join(
        c["delta"].get("content") or "" for _, d in events[:-1] for c in orjson.loads(d)["choices"]
    )
    assert text and expected("p").startswith(text) and text != expected("p")
    assert [a["outcome"] for a in p.state.attempts()] == [p_outcome]
    assert b.state.attempts() == []  # nothing is retried once bytes reached the caller
    assert (await admin_targets(http, gw))["m@p"]["consecutive_failures"] == 1
