"""Resilience end to end with hedging: a slow primary gets a hedge on the backup after
`hedge.after`, the loser is cancelled and not charged, and a primary that answers in time is
never hedged.

Every test runs real sims and a real gateway on loopback sockets and checks two views: what
the caller got (status, headers, body, time) and what each sim saw (its attempt log, whose
`t_start`/`t_end` are `time.monotonic()` in this same process). Many also read what the
gateway learned (`/admin/targets`).
"""

from __future__ import annotations

import aiohttp
import pytest

from tests.builders import (
    PROMPT,
    STALL_TIMEOUTS,
    GatewayFactory,
    SimFactory,
    admin_targets,
    answer_of,
    chat,
    expected,
    post,
    set_fault,
    start_pair,
)
from tests.waiting import eventually

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
