"""Failover before the first byte: the caller gets the second candidate's full answer and never
sees the first one's failure; caller errors pass through untouched and are never retried;
throttling, bad credentials and breakers keep traffic away from a target; when every candidate
fails or is open the caller gets an OpenAI-shaped error.

Every test drives real sims over loopback sockets and checks three views: what the caller got
(status, body, headers), what each sim saw (its attempt log) and what the gateway learned
(`/admin/targets`).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.edge.server import Server
from gateway.sim import SimServer
from gateway.sim.answers import answer_text, answer_words
from tests.builders import (
    FAILOVER_TIMEOUTS,
    PATIENT_TIMEOUTS,
    GatewayFactory,
    Reply,
    SimFactory,
    admin_targets,
    answer_of,
    chat,
    closed_port,
    make_config,
    post,
    set_fault,
    sse_events,
    upstream_app,
)
from tests.waiting import eventually

PROMPT = "where is the switch"
N_WORDS = 6
# No phase times out by accident; a whole answer still gets at most 5 s.
PATIENT = {**PATIENT_TIMEOUTS, "total_s": 5.0}


def expected(sim: str, model: str = "m1", prompt: str = PROMPT) -> str:
    return answer_text(sim, model, prompt, N_WORDS)


@dataclass
class Pair:
    a: SimServer
    b: SimServer
    gw: Server


async def start_pair(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    *,
    a_url: str | None = None,
    a_timeouts: dict[str, float] = PATIENT,
) -> Pair:
    """sim-a and sim-b behind one route, in that order. Only a fault that is a timeout needs
    sim-a's short `FAILOVER_TIMEOUTS`; every other phase waits long enough that a loaded machine
    never turns a slow answer into a failover the test did not ask for (seen on CI: a 400 that
    took 0.37 s to arrive went to sim-b)."""
    a = await sim_factory("sim-a", n_words=N_WORDS)
    b = await sim_factory("sim-b", n_words=N_WORDS)
    config = make_config(
        {"a": a_url or a.base_url, "b": b.base_url},
        {"chat": ["m1@a", "m1@b"]},
        timeouts=PATIENT,
        provider_timeouts={"a": a_timeouts},
    )
    return Pair(a, b, await gateway_factory(config))


@pytest.fixture
async def pair(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Pair:
    return await start_pair(sim_factory, gateway_factory)


@pytest.fixture
async def hasty_pair(sim_factory: SimFactory, gateway_factory: GatewayFactory) -> Pair:
    """sim-a's phases time out within 0.3 s (idle 0.5 s): for faults that are a timeout."""
    return await start_pair(sim_factory, gateway_factory, a_timeouts=FAILOVER_TIMEOUTS)


def assert_served_by_b(reply: Reply, stream: bool) -> None:
    assert reply.status == 200, reply.body
    assert reply.headers["x-turnout-target"] == "m1@b"
    assert reply.headers["x-turnout-attempts"] == "2"
    assert reply.headers["x-request-id"]
    assert answer_of(reply, stream) == expected("sim-b")


# --- provider failures before the first byte fail over -------------------------------------

# (fault on sim-a, stream?, sim-a's logged outcome once it is done, did the gateway hang up?)
FAILOVER_CASES = [
    pytest.param({"mode": "status", "status": 500}, False, "completed", False, id="500"),
    pytest.param({"mode": "status", "status": 502}, False, "completed", False, id="502"),
    pytest.param({"mode": "status", "status": 503}, False, "completed", False, id="503"),
    pytest.param({"mode": "status", "status": 504}, False, "completed", False, id="504"),
    pytest.param({"mode": "status", "status": 529}, False, "completed", False, id="529"),
    pytest.param({"mode": "status", "status": 503}, True, "completed", False, id="503-stream"),
    # A non-streaming hang is not here: its answer gets the whole total_s and is re-sent only
    # within a deadline (tests/e2e/test_defects.py, the non-streaming cases).
    pytest.param({"mode": "hang"}, True, "hang", True, id="hang-stream"),
    pytest.param({"mode": "reset"}, False, "reset", False, id="reset"),
    pytest.param({"mode": "reset"}, True, "reset", False, id="reset-stream"),
    pytest.param({"mode": "malformed"}, False, "malformed", False, id="malformed-body"),
    pytest.param({"mode": "cut"}, False, "cut", False, id="cut-body"),
    # headers and half the body, then silence: the idle timeout (0.5 s) ends it
    pytest.param({"mode": "stall"}, False, "stalled", True, id="stall-body"),
    pytest.param(
        {"mode": "slow_first_token", "delay_s": 5}, True, "client_disconnected", True,
        id="slow-first-token-stream",
    ),
    pytest.param({"mode": "cut", "after_chunks": 0}, True, "cut", False, id="cut-at-once"),
    pytest.param(
        {"mode": "cut", "after_chunks": 1}, True, "cut", False, id="cut-after-role-chunk"
    ),
    pytest.param(
        {"mode": "malformed", "after_chunks": 0}, True, "malformed", False, id="malformed-at-once"
    ),
    pytest.param(
        {"mode": "malformed", "after_chunks": 1}, True, "malformed", False,
        id="malformed-after-role-chunk",
    ),
    pytest.param(
        {"mode": "stall", "after_chunks": 1}, True, "stalled", True, id="stall-after-role-chunk"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "stream", "a_outcome", "hung_up"), FAILOVER_CASES)
async def test_provider_failure_before_first_byte_fails_over(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
    stream: bool,
    a_outcome: str,
    hung_up: bool,
) -> None:
    a_timeouts = FAILOVER_TIMEOUTS if hung_up else PATIENT
    pair = await start_pair(sim_factory, gateway_factory, a_timeouts=a_timeouts)
    set_fault(pair.a, fault)
    started = time.monotonic()
    reply = await post(http, pair.gw, chat(PROMPT, stream=stream or None))
    elapsed = time.monotonic() - started
    assert_served_by_b(reply, stream)
    if hung_up:  # the gateway waited for a phase timeout (0.3 s or 0.5 s), not much longer
        assert 0.25 <= elapsed < 1.5, elapsed
    else:
        assert elapsed < 1.0, elapsed

    def a_done() -> None:
        log = pair.a.state.attempts()
        assert len(log) == 1
        assert log[0]["t_end"] is not None
        assert log[0]["outcome"] == a_outcome
        assert log[0]["client_disconnected"] is hung_up
        assert log[0]["stream"] is stream

    await eventually(a_done)
    b_log = pair.b.state.attempts()
    assert [(x["outcome"], x["stream"]) for x in b_log] == [("completed", stream)]
    health = await admin_targets(http, pair.gw)
    assert health["m1@a"]["consecutive_failures"] == 1
    assert health["m1@a"]["window_calls"] == 1
    assert health["m1@a"]["error_rate"] == 1.0
    assert health["m1@a"]["state"] == "closed"
    assert health["m1@b"]["consecutive_failures"] == 0
    assert health["m1@b"]["window_calls"] == 1
    assert health["m1@b"]["error_rate"] == 0.0
    assert health["m1@a"]["in_flight"] == health["m1@b"]["in_flight"] == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_fails_over(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession,
    stream: bool,
) -> None:  # fmt: skip
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    p = await start_pair(sim_factory, gateway_factory, a_url=dead)
    started = time.monotonic()
    reply = await post(http, p.gw, chat(PROMPT, stream=stream or None))
    assert time.monotonic() - started < 1.0
    assert_served_by_b(reply, stream)
    assert p.a.state.attempts() == []  # sim-a is not even the address used
    assert len(p.b.state.attempts()) == 1
    health = await admin_targets(http, p.gw)
    assert health["m1@a"]["consecutive_failures"] == 1
    assert health["m1@a"]["error_rate"] == 1.0


# --- a stream that errors before its first content event ---------------------------------


@pytest.fixture
async def erroring_upstream() -> AsyncIterator[tuple[str, list[str]]]:
    """An OpenAI-like upstream whose stream sends a role chunk then an in-band error event.

    The sim has no such mode. Yields (base_url, paths seen)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        role = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        await resp.write(b"data: " + orjson.dumps(role) + b"\n\n")
        err = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
        await resp.write(b"event: error\ndata: " + orjson.dumps(err) + b"\n\n")
        await resp.write_eof()
        return resp

    async with upstream_app(handler) as url:
        yield url, seen


async def test_error_event_before_first_content_fails_over(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    erroring_upstream: tuple[str, list[str]],
) -> None:
    url, seen = erroring_upstream
    p = await start_pair(sim_factory, gateway_factory, a_url=url)
    reply = await post(http, p.gw, chat(PROMPT, stream=True))
    assert_served_by_b(reply, stream=True)
    assert b"overloaded" not in reply.body
    assert seen == ["/v1/chat/completions"]
    assert len(p.b.state.attempts()) == 1
    health = await admin_targets(http, p.gw)
    assert health["m1@a"]["consecutive_failures"] == 1


# --- caller errors pass through, untouched, and are not retried ----------------------------

CALLER_ERRORS = [
    pytest.param({"mode": "status", "status": 400}, False, id="400"),
    pytest.param({"mode": "status", "status": 400}, True, id="400-stream"),
    pytest.param({"mode": "status", "status": 422}, False, id="422"),
    # 404 is not here: the gateway picks path and model, so it is the target's (misconfigured)
    pytest.param({"mode": "status", "status": 413}, False, id="413"),
    pytest.param(
        {
            "mode": "status",
            "status": 400,
            "code": "context_length_exceeded",
            "message": "This model's maximum context length is 8192 tokens.",
        },
        False,
        id="context-length",
    ),
    pytest.param(
        {"mode": "status", "status": 400, "code": "context_length_exceeded"},
        True,
        id="context-length-stream",
    ),
]


@pytest.mark.parametrize(("fault", "stream"), CALLER_ERRORS)
async def test_caller_error_passes_through_unretried(
    pair: Pair, http: aiohttp.ClientSession, fault: dict[str, Any], stream: bool
) -> None:
    # What the sim answers when asked directly: the bytes the caller must get.
    set_fault(pair.a, {**fault, "count": 1})
    direct = chat(PROMPT, model="m1", stream=stream or None)
    async with http.post(pair.a.base_url + "/chat/completions", json=direct) as r:
        direct_status, direct_body = r.status, await r.read()
    assert direct_status == fault["status"]
    pair.a.state.clear_log()

    set_fault(pair.a, fault)
    reply = await post(http, pair.gw, chat(PROMPT, stream=stream or None))
    assert reply.status == fault["status"]
    assert reply.body == direct_body
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["x-turnout-target"] == "m1@a"
    assert reply.headers["x-turnout-attempts"] == "1"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["code"] == fault.get("code")
    assert len(pair.a.state.attempts()) == 1
    assert pair.b.state.attempts() == []
    health = await admin_targets(http, pair.gw)
    a = health["m1@a"]
    assert (a["state"], a["consecutive_failures"], a["window_calls"]) == ("closed", 0, 0)
    assert a["misconfigured"] is False and a["throttled_until"] is None


# --- throttling ------------------------------------------------------------------------------


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "throttle_s"),
    [
        pytest.param(30, 30.0, id="seconds"),
        pytest.param("http-date", 30.0, id="http-date"),
        pytest.param(None, 5.0, id="no-header-default-5s"),
    ],
)
async def test_429_fails_over_and_throttles_the_target(
    pair: Pair, http: aiohttp.ClientSession, retry_after: Any, throttle_s: float
) -> None:
    fault: dict[str, Any] = {"mode": "status", "status": 429}
    if retry_after == "http-date":
        fault["retry_after"] = _http_date(30)
    elif retry_after is not None:
        fault["retry_after"] = retry_after
    set_fault(pair.a, fault)
    before = time.time()
    reply = await post(http, pair.gw, chat(PROMPT))
    assert_served_by_b(reply, stream=False)
    a_log = pair.a.state.attempts()
    assert [x["status"] for x in a_log] == [429]

    health = await admin_targets(http, pair.gw)
    a = health["m1@a"]
    assert a["throttled_until"] is not None
    # An HTTP-date has one-second resolution.
    assert before + throttle_s - 1.5 <= a["throttled_until"] <= time.time() + throttle_s + 0.5
    # Throttling is neutral for the breaker.
    assert (a["state"], a["consecutive_failures"], a["window_calls"]) == ("closed", 0, 0)

    # While throttled, the target gets no traffic at all (even though its fault is still set).
    for _ in range(3):
        reply = await post(http, pair.gw, chat(PROMPT))
        assert reply.status == 200
        assert reply.headers["x-turnout-target"] == "m1@b"
        assert reply.headers["x-turnout-attempts"] == "1"
    assert len(pair.a.state.attempts()) == 1
    assert len(pair.b.state.attempts()) == 4


async def test_throttled_target_gets_no_traffic_even_when_the_other_fails(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    set_fault(pair.a, {"mode": "status", "status": 429, "retry_after": 30})
    reply = await post(http, pair.gw, chat(PROMPT))
    assert reply.headers["x-turnout-target"] == "m1@b"
    set_fault(pair.b, {"mode": "status", "status": 500})
    reply = await post(http, pair.gw, chat(PROMPT))
    assert reply.status == 502
    assert reply.headers["x-turnout-attempts"] == "1"
    assert reply.json()["error"]["message"] == "1 upstream attempt failed: m1@b: status 500."
    assert len(pair.a.state.attempts()) == 1, "the throttled target was called"
    assert len(pair.b.state.attempts()) == 2


# --- credential errors ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_misconfigured_target_fails_over_and_is_set_aside(
    pair: Pair, http: aiohttp.ClientSession, status: int
) -> None:
    # 404 is a deployment-name typo or a retired model: the target's problem, not the caller's.
    # The provider's message (here echoing the provider's key, "key-a") reaches the operator.
    said = "The model `m1` does not exist or you do not have access to it (key key-a)."
    set_fault(pair.a, {"mode": "status", "status": status, "message": said})
    before = time.time()
    reply = await post(http, pair.gw, chat(PROMPT))
    assert_served_by_b(reply, stream=False)
    assert [x["status"] for x in pair.a.state.attempts()] == [status]
    a = (await admin_targets(http, pair.gw))["m1@a"]
    assert a["misconfigured"] is True
    reason = a["misconfigured_reason"]
    assert reason.startswith(f"status {status}: ") and "does not exist or you do not" in reason
    assert "key-a" not in reason and "(key ***)" in reason
    assert a["state"] == "open"
    # misconfigured_open_s defaults to 300 s, no jitter
    assert a["open_until"] is not None
    assert before + 299 <= a["open_until"] <= time.time() + 301
    assert a["last_transition"]["to"] == "open"
    assert str(status) in a["last_transition"]["reason"]

    reply = await post(http, pair.gw, chat(PROMPT))
    assert reply.headers["x-turnout-target"] == "m1@b"
    assert reply.headers["x-turnout-attempts"] == "1"
    assert len(pair.a.state.attempts()) == 1


# --- every candidate fails ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_all_candidates_failing_gives_502_naming_each_attempt(
    pair: Pair, http: aiohttp.ClientSession, stream: bool
) -> None:
    set_fault(pair.a, {"mode": "status", "status": 500})
    set_fault(pair.b, {"mode": "reset"})
    reply = await post(http, pair.gw, chat(PROMPT, stream=stream or None))
    assert reply.status == 502
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["x-turnout-attempts"] == "2"
    assert reply.headers["x-request-id"]
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == "upstream_error"
    assert error["code"] == "all_candidates_failed"
    assert error["param"] is None
    message = error["message"]
    assert message.startswith("All 2 upstream attempts failed: ")
    assert "m1@a: status 500" in message
    assert "m1@b: " in message
    assert message.index("m1@a") < message.index("m1@b")
    assert len(pair.a.state.attempts()) == 1
    assert len(pair.b.state.attempts()) == 1


async def test_attempts_stop_at_max_attempts(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    sims = [await sim_factory(f"sim-{i}", n_words=N_WORDS) for i in range(4)]
    for sim in sims:
        set_fault(sim, {"mode": "status", "status": 503})
    config = make_config(
        {f"p{i}": s.base_url for i, s in enumerate(sims)},
        {"chat": [f"m1@p{i}" for i in range(4)]},
        timeouts=PATIENT,
    )
    gw = await gateway_factory(config)
    reply = await post(http, gw, chat(PROMPT))
    assert reply.status == 502
    assert reply.headers["x-turnout-attempts"] == "3"  # route max_attempts defaults to 3
    assert reply.json()["error"]["message"] == (
        "All 3 upstream attempts failed: m1@p0: status 503; m1@p1: status 503; m1@p2: status 503."
    )
    assert [len(s.state.attempts()) for s in sims] == [1, 1, 1, 0]


# --- breakers -------------------------------------------------------------------------------


async def test_breaker_opens_after_five_consecutive_failures(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    set_fault(pair.a, {"mode": "status", "status": 500})
    for i in range(5):
        reply = await post(http, pair.gw, chat(PROMPT))
        assert_served_by_b(reply, stream=False)
        a = (await admin_targets(http, pair.gw))["m1@a"]
        assert a["consecutive_failures"] == i + 1
        assert a["state"] == ("open" if i == 4 else "closed")
    assert len(pair.a.state.attempts()) == 5
    a = (await admin_targets(http, pair.gw))["m1@a"]
    assert a["last_transition"]["to"] == "open"
    assert a["last_transition"]["reason"] == "5 consecutive failures"
    assert a["open_until"] is not None
    assert 7.5 <= a["open_until"] - time.time() <= 12.5  # open_s 10 s +-20 % jitter

    # Open: skipped without an attempt, the healthy candidate answers on the first try.
    set_fault(pair.a, {"mode": "ok"})  # even a recovered target waits for its open time
    for _ in range(3):
        reply = await post(http, pair.gw, chat(PROMPT))
        assert reply.status == 200
        assert reply.headers["x-turnout-target"] == "m1@b"
        assert reply.headers["x-turnout-attempts"] == "1"
        assert answer_of(reply, stream=False) == expected("sim-b")
    assert len(pair.a.state.attempts()) == 5
    assert len(pair.b.state.attempts()) == 8


async def open_both(pair: Pair, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    """Fail both sims until both breakers are open (5 requests, 2 failures each)."""
    set_fault(pair.a, {"mode": "status", "status": 500})
    set_fault(pair.b, {"mode": "status", "status": 503})
    for _ in range(5):
        reply = await post(http, pair.gw, chat(PROMPT))
        assert reply.status == 502
        assert reply.headers["x-turnout-attempts"] == "2"
    health = await admin_targets(http, pair.gw)
    assert health["m1@a"]["state"] == health["m1@b"]["state"] == "open"
    assert [len(pair.a.state.attempts()), len(pair.b.state.attempts())] == [5, 5]
    return health


def sooner_to_recover(health: dict[str, dict[str, Any]]) -> str:
    return min(("m1@a", "m1@b"), key=lambda tid: health[tid]["open_until"])


async def test_every_candidate_open_gives_503_with_retry_after(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    health = await open_both(pair, http)
    least_bad = sooner_to_recover(health)
    for i in range(2):
        reply = await post(http, pair.gw, chat(PROMPT))
        assert reply.status == 503
        assert reply.headers["content-type"].startswith("application/json")
        retry_after = int(reply.headers["retry-after"])
        assert 1 <= retry_after <= 13  # the sooner of the two open times (10 s +-20 %)
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "code", "param"}
        assert error["type"] == "service_unavailable"
        assert error["code"] == "no_candidate_available"
        # Panic (docs/reliability.md): one last-resort attempt on the least-bad target, no more.
        assert reply.headers["x-turnout-attempts"] == "1"
        counts = {"m1@a": len(pair.a.state.attempts()), "m1@b": len(pair.b.state.attempts())}
        assert counts[least_bad] == 5 + i + 1
        assert sum(counts.values()) == 10 + i + 1


async def test_panic_attempt_on_the_least_bad_target_can_succeed(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    health = await open_both(pair, http)
    least_bad = sooner_to_recover(health)
    set_fault(pair.a, {"mode": "ok"})
    set_fault(pair.b, {"mode": "ok"})
    reply = await post(http, pair.gw, chat(PROMPT))
    assert reply.status == 200
    assert reply.headers["x-turnout-target"] == least_bad
    assert reply.headers["x-turnout-attempts"] == "1"
    sim = "sim-a" if least_bad == "m1@a" else "sim-b"
    assert answer_of(reply, stream=False) == expected(sim)
    assert len(pair.a.state.attempts()) + len(pair.b.state.attempts()) == 11


async def test_context_length_error_goes_to_a_larger_context_candidate(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a = await sim_factory("sim-a", n_words=N_WORDS)
    b = await sim_factory("sim-b", n_words=N_WORDS)
    config = make_config(
        {"a": a.base_url, "b": b.base_url},
        {"chat": ["small", "large"]},
        timeouts=PATIENT,
        extra={
            "targets": {
                "small": {"provider": "a", "model": "m1", "context_window": 8192},
                "large": {"provider": "b", "model": "m1", "context_window": 128000},
            }
        },
    )
    gw = await gateway_factory(config)
    set_fault(a, {"mode": "status", "status": 400, "code": "context_length_exceeded"})
    reply = await post(http, gw, chat(PROMPT))
    assert reply.status == 200
    assert reply.headers["x-turnout-target"] == "large"
    assert reply.headers["x-turnout-attempts"] == "2"
    assert answer_of(reply, stream=False) == expected("sim-b")
    assert [x["status"] for x in a.state.attempts()] == [400]
    assert len(b.state.attempts()) == 1
    small = (await admin_targets(http, gw))["small"]
    assert (small["state"], small["consecutive_failures"], small["window_calls"]) == (
        "closed",
        0,
        0,
    )


async def test_stream_failover_relays_only_the_second_candidates_events(
    hasty_pair: Pair, http: aiohttp.ClientSession
) -> None:
    """The first candidate's role chunk (held, never sent) does not leak into the answer."""
    pair = hasty_pair
    set_fault(pair.a, {"mode": "stall", "after_chunks": 1})
    reply = await post(http, pair.gw, chat(PROMPT, stream=True))
    assert_served_by_b(reply, stream=True)
    chunks = [orjson.loads(data) for _, data in sse_events(reply.body)[:-1]]
    assert len({c["id"] for c in chunks}) == 1  # every chunk from one upstream stream
    assert [c["choices"][0]["delta"].get("role") for c in chunks].count("assistant") == 1
    contents = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert [x for x in contents if x] == answer_words("sim-b", "m1", PROMPT, N_WORDS)
