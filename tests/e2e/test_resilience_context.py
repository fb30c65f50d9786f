"""Resilience end to end for a prompt too long for a model: a context-length error goes to a
candidate with a larger context window, and passes through untouched when no larger one is
left or it is open.

Every test runs real sims and a real gateway on loopback sockets and checks two views: what
the caller got (status, headers, body, time) and what each sim saw (its attempt log, whose
`t_start`/`t_end` are `time.monotonic()` in this same process). Many also read what the
gateway learned (`/admin/targets`).
"""

from __future__ import annotations

import aiohttp
import pytest

from gateway.sim import SimServer
from gateway.sim.endpoints import error_reply
from tests.builders import (
    N_WORDS,
    PROMPT,
    GatewayFactory,
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
)

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
