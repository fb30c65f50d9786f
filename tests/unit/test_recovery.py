"""Recovery after an outage, in virtual time: the real loop (`drive`), the real planner and the
real memory store (breakers, slow start) on one manual clock; only the provider is a script.

The scenario is the one a third-party fault suite failed Turnout on (issue 14): a primary that
answers 503 for 60 s, then recovers, under steady traffic, with a fallback that always answers.
"""

from __future__ import annotations

import random

import pytest

from gateway.resilience.driving import drive
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Limits, Stop
from health.breaker import BreakerState
from health.clock import ManualClock
from health.memory import MemoryStore
from health.outcome import Outcome, classify_status
from health.settings import BreakerSettings, HealthSettings
from health.store import Permit
from tests.unit.planning import Gate, StoreGates, make_plan, ranked

OK = classify_status(200)
DOWN = classify_status(503)


class Fleet:
    """Requests at a steady interval against primary + fallback; the primary is down in
    [down_from, down_until). Each attempt takes 50 ms of virtual time."""

    def __init__(self, down_from: float, down_until: float, settings: BreakerSettings) -> None:
        self.clock = ManualClock(0.0)
        self.store = MemoryStore(
            HealthSettings(breaker=settings), clock=self.clock, rng=random.Random(3)
        )
        self.gates = StoreGates(self.store, self.clock)
        self.down = (down_from, down_until)
        self.rng = random.Random(11)
        self.served: list[tuple[float, str]] = []  # (time the request began, who answered)
        self.attempts: list[tuple[float, str]] = []

    def _outcome(self, tid: str) -> Outcome:
        now = self.clock.now()
        return DOWN if tid == "primary" and self.down[0] <= now < self.down[1] else OK

    async def request(self) -> None:
        began = self.clock.now()
        plan = AttemptPlan(ranked("primary", "fallback"), Limits(), rng=self.rng)
        self.gates.budget.on_request()

        async def attempt(permit: Permit, panic: bool) -> str:
            tid = permit.target_id
            self.attempts.append((self.clock.now(), tid))
            self.clock.advance(0.05)
            outcome = self._outcome(tid)
            self.store.release(permit, outcome)
            plan.record(AttemptRecord(tid, outcome, panic=panic))
            return tid

        async def sleep(seconds: float) -> None:
            self.clock.advance(seconds)

        last = await drive(plan, self.gates, attempt, self.clock.now, sleep)
        assert plan.stop is Stop.SUCCESS, f"request at {began:.1f}s got {plan.stop}"
        assert last is not None
        self.served.append((began, last))

    async def run(self, until: float, every_s: float) -> None:
        t = self.clock.now()
        while t < until:
            self.clock.advance(max(0.0, t - self.clock.now()))
            await self.request()
            t += every_s


async def test_a_primary_that_recovers_gets_traffic_back_within_one_open_time() -> None:
    settings = BreakerSettings(jitter=0.0)  # defaults otherwise: open_s 10, slow start 20 s
    fleet = Fleet(down_from=4.0, down_until=64.0, settings=settings)
    await fleet.run(until=100.0, every_s=4.0)
    # Every caller was answered; the fallback took the outage.
    assert all(who in ("primary", "fallback") for _, who in fleet.served)
    back = [t for t, who in fleet.served if who == "primary" and t >= 64.0]
    assert back, "the primary never got traffic back"
    # Before the fix the open time doubled on each failed probe (10, 20, 40 s) and the primary
    # served nothing until past 100 s. Now it is probed every open_s: back within one open
    # time and a request interval of recovering.
    assert back[0] - 64.0 <= settings.open_s + 4.0
    # Probing cost: one attempt per open_s during the outage, not one per request.
    probes = [t for t, tid in fleet.attempts if tid == "primary" and 4.0 <= t < 64.0]
    assert len(probes) <= 5 + 60.0 / settings.open_s + 1  # the tripping failures + probes
    assert fleet.store.snapshot(["primary"])["primary"].state is BreakerState.CLOSED


async def test_after_a_recovery_the_primary_s_share_ramps_up_over_slow_start() -> None:
    settings = BreakerSettings(jitter=0.0, slow_start_s=20.0)
    fleet = Fleet(down_from=1.0, down_until=15.0, settings=settings)
    await fleet.run(until=30.0, every_s=1.0)  # trips, probes, recovers (closes by ~26 s)
    closed = fleet.store.snapshot(["primary"])["primary"].last_transition
    assert closed is not None and closed.to is BreakerState.CLOSED
    start = len(fleet.served)
    await fleet.run(until=closed.at_s + 40.0, every_s=0.05)
    after = fleet.served[start:]

    def share(lo: float, hi: float) -> float:
        window = [who for t, who in after if closed.at_s + lo <= t < closed.at_s + hi]
        return sum(w == "primary" for w in window) / len(window)

    early, late, done = share(0.0, 5.0), share(15.0, 20.0), share(25.0, 40.0)
    assert early < 0.4  # ~10-32 % over its first quarter
    assert late > 0.75  # ~77-100 %
    assert early < late
    assert done == 1.0  # ramp over: all of it


def test_a_warming_target_is_passed_over_by_a_share_but_never_turns_a_request_away() -> None:
    gate = Gate(denied=["b"])
    taken = []
    for seed in range(400):
        plan = make_plan(ranked("a", "b"), seed=seed)
        permit = plan.next_target(gate, lambda tid: 0.0 if tid == "a" else 1.0)
        assert permit is not None  # b is denied: the warming a takes it after all
        taken.append(permit.target_id)
    assert set(taken) == {"a"}

    shares = []
    for seed in range(2000):
        plan = make_plan(ranked("a", "b"), seed=seed)
        permit = plan.next_target(Gate(), lambda tid: 0.3 if tid == "a" else 1.0)
        assert permit is not None
        shares.append(permit.target_id == "a")
    assert sum(shares) / len(shares) == pytest.approx(0.3, abs=0.04)


def test_full_warmth_draws_nothing_so_a_healthy_plan_is_unchanged() -> None:
    plan = make_plan(ranked("a", "b"), seed=5)
    state = plan.rng.getstate()
    permit = plan.next_target(Gate(), lambda tid: 1.0)
    assert permit is not None and permit.target_id == "a"
    assert plan.rng.getstate() == state  # no random draw on the hot path
