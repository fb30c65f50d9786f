"""Resilience end to end for broken streams with a backup: broken before the first token, the
request fails over; broken after the first byte, nothing is retried and the stream ends with an
in-band `error` event.

Every test runs real sims and a real gateway on loopback sockets and checks two views: what
the caller got (status, headers, body, time) and what each sim saw (its attempt log, whose
`t_start`/`t_end` are `time.monotonic()` in this same process). Many also read what the
gateway learned (`/admin/targets`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from tests.builders import (
    ERROR_KEYS,
    PROMPT,
    GatewayFactory,
    SimFactory,
    admin_targets,
    answer_of,
    chat,
    expected,
    post,
    set_fault,
    sse_events,
    start_pair,
)
from tests.waiting import eventually


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
    ("fault", "code", "p_outcomes"),
    [
        # A run: one more malformed event than resilience.stream_malformed_max (3) tolerates.
        # The sim may have written its whole answer before the gateway hung up.
        pytest.param(
            {"mode": "garbled", "after_chunks": 3, "times": 4},
            "malformed",
            {"garbled", "client_disconnected"},
            id="malformed-run",
        ),
        pytest.param({"mode": "cut", "after_chunks": 3}, "cut", {"cut"}, id="cut"),
    ],
)
async def test_broken_stream_after_the_first_byte_ends_with_an_error_event(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    fault: dict[str, Any],
    code: str,
    p_outcomes: set[str],
) -> None:
    # Continuation off: this pins the honest ending (tests/e2e/test_continuation.py continues).
    p, b, gw = await start_pair(sim_factory, gateway_factory, route={"continuation": False})
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
    assert error["code"] == f"upstream_{code}"
    # What did arrive is p's partial answer, never b's.
    text = "".join(
        c["delta"].get("content") or "" for _, d in events[:-1] for c in orjson.loads(d)["choices"]
    )
    assert text and expected("p").startswith(text) and text != expected("p")

    async def p_ended() -> None:  # the sim notices a hang-up in its own time
        assert [a["outcome"] for a in p.state.attempts()] in [[o] for o in p_outcomes]

    await eventually(p_ended)
    assert b.state.attempts() == []  # nothing is retried once bytes reached the caller
    assert (await admin_targets(http, gw))["m@p"]["consecutive_failures"] == 1
