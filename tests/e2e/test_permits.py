"""Every permit goes back, on every path (issue 12 item 1).

A seeded fuzz of the attempt path against real sims: random faults (statuses, hangs, resets,
cuts, stalls, malformed bodies, slow first tokens), streaming or not, plain and hedged routes,
callers that leave at a random moment or send a tiny deadline, open breakers and panic
attempts. Afterwards every target's `in_flight` is back to 0 and no panic slot is held —
whatever happened, no target is stranded.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp

from gateway.edge.context import RUNTIME
from gateway.resilience.permits import Permits
from gateway.sim.faults import Fault
from health.clock import ManualClock
from health.memory import MemoryStore
from health.outcome import Outcome, OutcomeKind
from tests.builders import (
    CHAT,
    TIGHT_TIMEOUTS,
    GatewayFactory,
    SimFactory,
    admin_targets,
    make_config,
)
from tests.waiting import eventually

FAULTS: list[dict[str, Any]] = [
    {"mode": "ok"},
    {"mode": "status", "status": 500},
    {"mode": "status", "status": 503},
    {"mode": "status", "status": 429, "retry_after": 0.2},
    {"mode": "status", "status": 401},
    {"mode": "status", "status": 400},
    {"mode": "hang"},
    {"mode": "reset"},
    {"mode": "cut"},
    {"mode": "cut", "after_chunks": 2},
    {"mode": "stall", "after_chunks": 1},
    {"mode": "malformed"},
    {"mode": "slow_first_token", "delay_s": 0.3},
]


async def test_no_attempt_path_leaks_a_permit(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    rng = random.Random(12)
    sims = {n: await sim_factory(f"sim-{n}", chunk_interval_ms=20) for n in "abc"}
    targets = ["m@a", "m@b", "m@c"]
    routes = [{"alias": "plain", "candidates": targets}]
    routes.append({"alias": "hedged", "candidates": targets, "hedge": {"after": 0.05}})
    config = make_config(
        {n: s.base_url for n, s in sims.items()},
        {},
        timeouts=TIGHT_TIMEOUTS,
        extra={
            "routes": routes,
            "health": {"breaker": {"open_s": 0.2, "open_max_s": 0.4, "consecutive_failures": 3}},
            "resilience": {"budget_min_retries": 1000},
        },
    )
    gw = await gateway_factory(config)
    outcomes: dict[str, int] = {}

    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> None:
            sim = sims[rng.choice("abc")]
            spec = dict(rng.choice(FAULTS))
            spec["count"] = rng.randint(1, 3)
            sim.state.set_fault(Fault.from_json(spec))
            body = {
                "model": rng.choice(["plain", "hedged"]),
                "stream": rng.random() < 0.5,
                "messages": [{"role": "user", "content": f"q{i}"}],
            }
            headers = {}
            if rng.random() < 0.1:
                headers["x-turnout-deadline-ms"] = str(rng.choice([1, 20, 150]))
            leave_after = rng.uniform(0.0, 0.5) if rng.random() < 0.35 else None
            try:
                async with asyncio.timeout(leave_after):
                    async with http.post(gw.url + CHAT, json=body, headers=headers) as r:
                        await r.read()
                        key = str(r.status)
            except TimeoutError:
                key = "left"
            except aiohttp.ClientError:
                key = "dropped"
            outcomes[key] = outcomes.get(key, 0) + 1

        for start in range(0, 240, 12):  # 12 concurrent callers at a time
            await asyncio.gather(*(one(i) for i in range(start, start + 12)))

        async def all_returned() -> None:
            view = await admin_targets(http, gw)
            assert {t: view[t]["in_flight"] for t in targets} == dict.fromkeys(targets, 0)
            assert not gw.app[RUNTIME].panicking

        await eventually(all_returned, timeout_s=5.0)
    # The fuzz went where it should: answers, failures and callers leaving all happened (the
    # mix depends on timing and on how many breakers opened; each kind must be there).
    assert sum(outcomes.values()) == 240, outcomes
    assert outcomes.get("200", 0) >= 10, outcomes
    assert outcomes.get("left", 0) >= 3, outcomes
    assert sum(v for k, v in outcomes.items() if k.startswith("5")) >= 3, outcomes


def test_closing_returns_what_is_still_held() -> None:
    store = MemoryStore(clock=ManualClock())
    permits = Permits(store)
    first = permits.acquire("a")
    permits.acquire("a")
    permits.force_acquire("b")
    assert first is not None
    assert permits.release(first, Outcome(OutcomeKind.SUCCESS))
    assert not permits.release(first, Outcome(OutcomeKind.SUCCESS))  # once only
    permits.close(cancelled=False)  # as after a bug of ours mid-request
    view = store.snapshot(["a", "b"])
    assert (view["a"].in_flight, view["b"].in_flight) == (0, 0)
    assert len(permits) == 0
    # The leftovers were neutral: nothing was counted against the targets.
    assert view["a"].window_calls == 1 and view["b"].window_calls == 0
