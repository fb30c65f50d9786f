"""The breaker transition log (issue 12 item 15): every transition reaches /admin/events.

The dashboard used to note, when /admin/events was read, each target's *latest* transition:
a breaker that went closed -> open -> half-open -> closed between two reads showed only the
last. Now the breakers append each transition, as it happens, to their store's bounded
`TransitionLog`, and the feed moves the log into the timeline when it is read.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp

from gateway.sim.faults import Fault
from health.breaker import Breaker, BreakerState, TransitionLog
from health.clock import ManualClock
from health.fleet import FleetSettings, FleetStore
from health.fleet_event import EventKind, FleetEvent
from health.fleet_view import apply_event
from health.memory import MemoryStore
from health.outcome import Outcome, OutcomeKind
from health.settings import BreakerSettings, HealthSettings
from tests.builders import CHAT, GatewayFactory, SimFactory, chat, make_config

OPEN_S = 0.3
BREAKER: dict[str, Any] = {
    "consecutive_failures": 2,
    "open_s": OPEN_S,
    "jitter": 0.0,
    "half_open_successes": 1,
}


async def served_by(http: aiohttp.ClientSession, url: str) -> str | None:
    async with http.post(url + CHAT, json=chat()) as r:
        assert r.status == 200, await r.text()
        return r.headers.get("x-turnout-target")


async def test_transitions_between_two_reads_all_reach_the_timeline(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    bad, good = await sim_factory("sim-a"), await sim_factory("sim-b")
    gw = await gateway_factory(
        make_config(
            {"a": bad.base_url, "b": good.base_url},
            {"chat": ["m@a", "m@b"]},
            extra={"health": {"breaker": BREAKER}},
        )
    )
    started = time.time()
    # m@a fails: every request fails over to m@b, and m@a's breaker opens.
    bad.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for _ in range(BREAKER["consecutive_failures"]):
        assert await served_by(http, gw.url) == "m@b"
    # m@a recovers. Wait well past the open time without reading anything, so the move to
    # half-open is only made (lazily) by the next request, which is m@a's probe: it closes it.
    bad.state.set_fault(Fault())
    await asyncio.sleep(OPEN_S * 3)
    assert await served_by(http, gw.url) == "m@a"

    # The one read of the feed, after the whole cycle.
    async with http.get(gw.url + "/admin/events") as r:
        assert r.status == 200
        events = (await r.json())["data"]
    ours = [e for e in events if e["kind"] == "breaker" and e["target"] == "m@a"]
    ours.reverse()  # the feed is newest first
    assert [e["to"] for e in ours] == ["open", "half_open", "closed"], ours
    assert [(e["from"], e["to"]) for e in ours] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ], ours
    assert [e["reason"] for e in ours] == [
        "2 consecutive failures",
        "open time elapsed",
        "probes succeeded",
    ]
    opened, half_open, closed = (e["at"] for e in ours)
    assert started <= opened < half_open < closed <= time.time()
    # Half-open is stamped when it became due (open time, no jitter), not when it was read.
    assert abs((half_open - opened) - OPEN_S) < 0.05, (opened, half_open)
    assert closed - opened >= OPEN_S * 3 - 0.05
    assert [e["seq"] for e in ours] == sorted(e["seq"] for e in ours)
    # Moved, not copied: a second read shows each transition once, and ?since skips them.
    async with http.get(gw.url + "/admin/events") as r:
        again = [e for e in (await r.json())["data"] if e["kind"] == "breaker"]
    assert sorted(e["seq"] for e in again) == sorted(e["seq"] for e in ours)
    newest = max(e["seq"] for e in events)
    async with http.get(gw.url + f"/admin/events?since={newest}") as r:
        assert (await r.json())["data"] == []


def test_the_log_is_bounded_and_keeps_the_newest_in_virtual_time() -> None:
    clock = ManualClock(1000.0)
    log = TransitionLog(max_entries=5, wall=lambda: 2_000_000.0 + clock.now())
    settings = BreakerSettings(jitter=0.0, open_s=10.0, open_max_s=10.0, half_open_successes=1)
    b = Breaker(settings, random.Random(1))
    b.attach(log, "m@a")
    cycles = 4  # closed -> open -> half-open -> closed: 3 transitions each, 12 in all
    for _ in range(cycles):
        b.trip(clock.now(), "tripped")
        clock.advance(25.0)  # read 15 s after the open time ran out
        assert b.state(clock.now()) is BreakerState.HALF_OPEN
        b.on_success(clock.now(), probe=True)
        assert b.state(clock.now()) is BreakerState.CLOSED
        clock.advance(1.0)
    assert len(log) == 5 and log.dropped == 3 * cycles - 5
    kept = log.take()
    assert len(log) == 0 and log.take() == []
    assert [(t.from_state, t.to) for t in kept] == [
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert all(t.target_id == "m@a" for t in kept)
    # The last cycle started at 1078: opened then, half-open when due (1088, although read at
    # 1103), closed at the read; wall-clock times follow the same instants.
    assert [t.at_s for t in kept[2:]] == [1078.0, 1088.0, 1103.0]
    assert [t.at for t in kept] == [2_000_000.0 + t.at_s for t in kept]
    assert b.last_transition is not None and b.last_transition.at_s == 1103.0


def test_a_store_logs_the_transitions_of_all_its_targets() -> None:
    clock = ManualClock()
    settings = HealthSettings(breaker=BreakerSettings(consecutive_failures=1, jitter=0.0))
    store = MemoryStore(settings, clock=clock)
    failure = Outcome(OutcomeKind.PROVIDER_FAILURE)
    for tid in ("m@a", "m@b"):
        permit = store.acquire(tid)
        assert permit is not None
        store.release(permit, failure)
    clock.advance(settings.breaker.open_s + 1)
    store.snapshot(["m@a", "m@b"])  # a read makes the due moves to half-open
    got = [(t.target_id, t.to, t.at_s - 1000.0) for t in store.transitions.take()]
    assert got == [
        ("m@a", BreakerState.OPEN, 0.0),
        ("m@b", BreakerState.OPEN, 0.0),
        ("m@a", BreakerState.HALF_OPEN, 10.0),
        ("m@b", BreakerState.HALF_OPEN, 10.0),
    ]


def test_a_fleet_store_logs_in_its_local_view_the_one_the_dashboard_reads() -> None:
    store = FleetStore(FleetSettings(url="redis://127.0.0.1:1"), clock=ManualClock())
    assert store.transitions is store.local.transitions
    # A peer's trip (applied to the local view) is logged like a local one.
    apply_event(store.local.signals("m@a"), FleetEvent(EventKind.TRIP, "m@a", 5.0, 1, "x"), 1.0)
    [t] = store.transitions.take()
    assert (t.target_id, t.from_state, t.to, t.reason) == (
        "m@a",
        BreakerState.CLOSED,
        BreakerState.OPEN,
        "peer: x",
    )
