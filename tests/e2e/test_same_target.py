"""Same-target retries end to end (issue 14): real sims and a real gateway on loopback.

A one-off 500 or reset and a 429 with a short Retry-After are answered by the route's own
primary after the right wait; a long Retry-After and a timeout fail over at once; a persistent
429 gets no more than its retries. What the caller got is checked with what each sim saw.
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.builders import (
    PROMPT,
    GatewayFactory,
    SimFactory,
    answer_of,
    chat,
    expected,
    post,
    set_fault,
    start_pair,
)

SAME = {"same_target_retries": 1, "retry_after_wait_s": 2.0}  # the shipped defaults


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    "fault",
    [{"mode": "status", "status": 500}, {"mode": "status", "status": 503}, {"mode": "reset"}],
    ids=["500", "503", "reset"],
)
async def test_a_one_off_failure_is_answered_by_the_same_target(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    fault: dict[str, object],
    stream: bool,
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, resilience=SAME)
    set_fault(p, {**fault, "count": 1})
    r = await post(http, gw, chat(PROMPT, stream=stream))
    assert r.status == 200
    assert answer_of(r, stream) == expected("p")
    assert (r.target, r.attempts) == ("m@p", "2")
    assert len(p.state.attempts()) == 2 and b.state.attempts() == []


async def test_a_short_retry_after_is_waited_out_on_the_primary(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, resilience=SAME)
    set_fault(p, {"mode": "status", "status": 429, "retry_after": "1", "count": 1})
    r = await post(http, gw, chat(PROMPT))
    assert r.status == 200 and answer_of(r, False) == expected("p")
    assert (r.target, r.attempts) == ("m@p", "2")
    assert b.state.attempts() == []
    first, second = p.state.attempts()
    gap = second["t_start"] - first["t_end"]
    assert 1.0 <= gap < 2.0, gap  # the Retry-After, not a second less, not a lot more


async def test_a_long_retry_after_fails_over_at_once(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, resilience=SAME)
    set_fault(p, {"mode": "status", "status": 429, "retry_after": "30"})
    r = await post(http, gw, chat(PROMPT))
    assert r.status == 200 and answer_of(r, False) == expected("b")
    assert (r.target, r.attempts) == ("m@b", "2")
    assert r.elapsed < 1.0
    assert len(p.state.attempts()) == 1 and len(b.state.attempts()) == 1


async def test_a_persistent_429_gets_no_more_than_its_retries(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, resilience=SAME)
    set_fault(p, {"mode": "status", "status": 429, "retry_after": "0.5"})
    r = await post(http, gw, chat(PROMPT))
    assert r.status == 200 and answer_of(r, False) == expected("b")
    assert (r.target, r.attempts) == ("m@b", "3")
    assert len(p.state.attempts()) == 2  # one wait on it, then the fallback
    # The target is throttled for what it asked: the next caller goes to b straight away.
    r = await post(http, gw, chat(PROMPT))
    assert (r.target, r.attempts) == ("m@b", "1")
    assert len(p.state.attempts()) == 2 and len(b.state.attempts()) == 2


async def test_a_timeout_is_never_retried_on_the_same_target(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    p, b, gw = await start_pair(sim_factory, gateway_factory, resilience=SAME)
    set_fault(p, {"mode": "hang", "count": 1})
    r = await post(http, gw, chat(PROMPT, stream=True))
    assert r.status == 200 and answer_of(r, True) == expected("b")
    assert (r.target, r.attempts) == ("m@b", "2")
    assert len(p.state.attempts()) == 1 and len(b.state.attempts()) == 1
