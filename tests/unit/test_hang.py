"""A target that stops answering (issue 14, part 5), in virtual time: the real store, planner,
loop and retry budget on one manual clock; only the provider is a script.

A target is *not answering* when requests have waited on it, without one answer coming back,
for longer than max(floor_s, factor x its TTFT peak-EWMA) (floor_s alone with no history).
New requests then pass it over (admission DEFER, `why_unavailable` says so) until anything
comes back from it; the retry of a request that timed out on it is not charged to the budget.
"""

from __future__ import annotations

import asyncio
import heapq
import random

from gateway.resilience.budget import BudgetSettings
from gateway.resilience.driving import drive
from gateway.resilience.dry_run import would_try
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Limits, Stop
from health.breaker import Admission, BreakerState
from health.clock import ManualClock
from health.memory import MemoryStore
from health.outcome import (
    CLIENT_GONE,
    FailureReason,
    Outcome,
    classify_status,
    provider_failure,
    succeeded,
)
from health.settings import HangSettings, HealthSettings
from health.store import Permit
from tests.unit.planning import StoreGates, ranked

FAST = succeeded(200, ttft_s=0.2)  # the primary's usual first token: 0.2 s
TIMED_OUT = provider_failure(FailureReason.FIRST_TOKEN_TIMEOUT)
DOWN = classify_status(503)


def store_at(clock: ManualClock, **hang: float) -> MemoryStore:
    settings = HealthSettings(hang=HangSettings(**hang))  # type: ignore[arg-type]
    return MemoryStore(settings, clock=clock, rng=random.Random(1))


def with_history(store: MemoryStore, tid: str = "primary") -> None:
    """One fast answer: TTFT peak-EWMA 0.2 s."""
    permit = store.acquire(tid)
    assert permit is not None
    store.release(permit, FAST)


# --- detection ----------------------------------------------------------------------------------


def test_a_target_is_passed_over_after_the_limit_and_not_before() -> None:
    clock = ManualClock(10.0)
    store = store_at(clock, factor=4.0, floor_s=1.0)
    with_history(store)  # limit: max(1.0, 4 x 0.2) = 1.0 s
    stuck = store.acquire("primary")  # sent at 10.0: nothing comes back
    assert stuck is not None
    clock.advance(0.95)
    assert store.admission("primary") is Admission.ALLOW
    assert store.snapshot(["primary"])["primary"].why_unavailable() is None
    assert store.acquire("primary") is not None  # still takes new requests (this one too)
    clock.advance(0.1)  # 1.05 s without an answer
    assert store.admission("primary") is Admission.DEFER
    assert store.acquire("primary") is None  # no new request
    view = store.snapshot(["primary"])["primary"]
    assert view.state is BreakerState.CLOSED  # the breaker has not seen one failure
    why = view.why_unavailable()
    assert why is not None and why.startswith("not answering"), why
    assert not view.available


def test_the_limit_follows_the_usual_time_to_first_token() -> None:
    clock = ManualClock(0.0)
    store = store_at(clock, factor=4.0, floor_s=1.0)
    permit = store.acquire("slow")
    assert permit is not None
    store.release(permit, succeeded(200, ttft_s=2.0))  # usual: 2 s -> limit 8 s
    assert store.acquire("slow") is not None
    clock.advance(7.9)
    assert store.admission("slow") is Admission.ALLOW
    clock.advance(0.2)
    assert store.admission("slow") is Admission.DEFER


def test_with_no_history_the_floor_is_the_limit() -> None:
    clock = ManualClock(0.0)
    store = store_at(clock, floor_s=3.0)
    assert store.acquire("new") is not None  # never answered yet: no EWMA
    clock.advance(2.9)
    assert store.admission("new") is Admission.ALLOW
    clock.advance(0.2)
    assert store.admission("new") is Admission.DEFER
    assert store.snapshot(["new"])["new"].hang_after_s == 3.0


def test_anything_that_comes_back_clears_it_a_timeout_does_not() -> None:
    clock = ManualClock(0.0)
    store = store_at(clock)
    with_history(store)
    first = store.acquire("primary")
    second = store.acquire("primary")
    assert first is not None and second is not None
    clock.advance(1.5)
    assert store.admission("primary") is Admission.DEFER
    store.release(first, TIMED_OUT)  # a timer fired: still nothing back; `second` waits on
    assert store.admission("primary") is Admission.DEFER
    store.release(second, DOWN)  # a 503 is an answer: it is not hung, just failing
    assert store.admission("primary") is Admission.ALLOW
    # A stream's first output event (before its attempt is released) clears it as well.
    third = store.acquire("primary")
    assert third is not None
    clock.advance(1.5)
    assert store.admission("primary") is Admission.DEFER
    store.heard("primary")
    assert store.admission("primary") is Admission.ALLOW
    store.release(third, FAST)
    assert store.snapshot(["primary"])["primary"].in_flight == 0


def test_old_attempts_do_not_count_once_the_target_answered() -> None:
    clock = ManualClock(0.0)
    store = store_at(clock)
    with_history(store)
    long_stream = store.acquire("primary")  # a stream that committed, relaying for a while
    assert long_stream is not None
    store.heard("primary")
    clock.advance(30.0)
    assert store.admission("primary") is Admission.ALLOW  # in flight, but it answered
    # A later attempt that is cancelled leaves nothing waiting behind it.
    gone = store.acquire("primary")
    assert gone is not None
    clock.advance(0.5)
    store.release(gone, CLIENT_GONE)
    clock.advance(5.0)
    assert store.admission("primary") is Admission.ALLOW


def test_detection_can_be_turned_off() -> None:
    clock = ManualClock(0.0)
    store = MemoryStore(
        HealthSettings(hang=HangSettings(enabled=False)), clock=clock, rng=random.Random(1)
    )
    assert store.acquire("primary") is not None
    clock.advance(60.0)
    assert store.admission("primary") is Admission.ALLOW
    assert store.snapshot(["primary"])["primary"].why_unavailable() is None


# --- the planner: pass over, last resort, the budget rule -----------------------------------------


def hung_primary(budget: BudgetSettings | None = None) -> tuple[ManualClock, StoreGates, Permit]:
    clock = ManualClock(0.0)
    store = store_at(clock)
    with_history(store)
    stuck = store.acquire("primary")
    assert stuck is not None
    clock.advance(1.5)  # past the 1 s limit
    return clock, StoreGates(store, clock, budget), stuck


def test_a_request_passes_over_a_target_that_is_not_answering() -> None:
    _, gates, _ = hung_primary()
    plan = AttemptPlan(ranked("primary", "fallback"), Limits())
    picked = plan.pick(gates)
    assert picked is not None and picked[0].target_id == "fallback"
    assert would_try(ranked("primary", "fallback"), 3, gates.admission, True) == [
        "fallback",
        "primary",  # the dry run: passed over, then the last resort
    ]


def test_with_nowhere_else_to_go_it_still_takes_the_request() -> None:
    _, gates, _ = hung_primary()
    gates.store.signals("fallback").breaker.trip(0.0, "test")  # the other candidate is out
    plan = AttemptPlan(ranked("primary", "fallback"), Limits())
    picked = plan.pick(gates)
    assert picked is not None
    permit, panic = picked
    assert permit.target_id == "primary" and not panic  # not the panic attempt: no 503s
    assert gates.store.snapshot(["primary"])["primary"].in_flight == 2  # the stuck one too


def test_the_retry_after_a_timeout_on_a_target_set_aside_is_not_charged() -> None:
    empty = BudgetSettings(ratio=0.0, min_retries=0)  # no retry may be charged at all
    clock = ManualClock(0.0)
    store = store_at(clock)
    with_history(store)
    gates = StoreGates(store, clock, empty)
    first = store.acquire("primary")  # two requests stuck behind the hang
    clock.advance(0.5)
    second = store.acquire("primary")
    assert first is not None and second is not None
    clock.advance(1.5)  # the first one's first-token timer fires at 2 s
    store.release(first, TIMED_OUT)
    assert gates.admission("primary") is Admission.DEFER  # the second still waits on it
    plan = AttemptPlan(ranked("primary", "fallback"), Limits(stream=True))
    plan.record(AttemptRecord("primary", TIMED_OUT))
    assert plan.after(clock.now(), gates) is None  # goes on, to the fallback: free
    picked = plan.pick(gates)
    assert picked is not None and picked[0].target_id == "fallback"
    assert gates.budget.left() == 0.0


def test_when_the_last_waiting_request_timed_out_the_breaker_decides() -> None:
    clock = ManualClock(0.0)
    store = store_at(clock)
    with_history(store)
    stuck = store.acquire("primary")
    assert stuck is not None
    clock.advance(1.5)
    assert store.admission("primary") is Admission.DEFER
    clock.advance(0.5)
    store.release(stuck, TIMED_OUT)  # nothing waits on it any more: one timeout, 1 of 5
    assert store.admission("primary") is Admission.ALLOW


def test_the_retry_after_a_timeout_on_a_healthy_target_is_charged() -> None:
    empty = BudgetSettings(ratio=0.0, min_retries=0)
    clock = ManualClock(0.0)
    store = store_at(clock)
    with_history(store)
    gates = StoreGates(store, clock, empty)
    slow = store.acquire("primary")
    assert slow is not None
    clock.advance(0.5)
    with_history(store)  # another request answered meanwhile: it is answering
    clock.advance(1.5)
    store.release(slow, TIMED_OUT)
    plan = AttemptPlan(ranked("primary", "fallback"), Limits(stream=True))
    plan.record(AttemptRecord("primary", TIMED_OUT))
    assert gates.admission("primary") is Admission.ALLOW
    assert plan.after(clock.now(), gates) is Stop.BUDGET  # an ordinary retry: the budget's


def test_a_5xx_retry_is_still_charged_when_the_breaker_opened() -> None:
    empty = BudgetSettings(ratio=0.0, min_retries=0)
    clock = ManualClock(0.0)
    store = store_at(clock)
    gates = StoreGates(store, clock, empty)
    for _ in range(5):  # a fast outage: the storm the budget is for
        p = store.acquire("primary")
        assert p is not None
        store.release(p, DOWN)
    plan = AttemptPlan(ranked("primary", "fallback"), Limits())
    plan.record(AttemptRecord("primary", DOWN))
    assert gates.admission("primary") is Admission.DENY
    assert plan.after(clock.now(), gates) is Stop.BUDGET


# --- the numbers: 50 req/s, a 2 s first-token timeout, the primary starts hanging --------


class Timers:
    """Concurrent requests in virtual time: `sleep` waits until the manual clock reaches its
    deadline; `run` moves the clock from one timer to the next, letting every task run."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.clock.now() + max(0.0, seconds), self._seq, fut))
        self._seq += 1
        await fut

    async def _settle(self) -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def run(self) -> None:
        await self._settle()
        while self._heap:
            at, _, fut = heapq.heappop(self._heap)
            self.clock.advance(max(0.0, at - self.clock.now()))
            fut.set_result(None)
            await self._settle()


class Steady:
    """Requests every `every_s` against primary + fallback (first token 0.2 s); from `hang_at`
    the primary sends nothing and each attempt on it ends at the 2 s first-token timeout."""

    TIMEOUT_S = 2.0

    def __init__(self, hang_at: float, hang: HangSettings) -> None:
        self.clock = ManualClock(0.0)
        self.timers = Timers(self.clock)
        settings = HealthSettings(hang=hang)  # breaker and budget: the shipped defaults
        self.store = MemoryStore(settings, clock=self.clock, rng=random.Random(3))
        self.gates = StoreGates(self.store, self.clock)
        self.hang_at = hang_at
        self.rng = random.Random(5)
        self.results: list[tuple[float, Stop | None, list[str], float]] = []

    async def request(self) -> None:
        began = self.clock.now()
        plan = AttemptPlan(ranked("primary", "fallback"), Limits(stream=True), rng=self.rng)
        self.gates.budget.on_request()
        tried: list[str] = []

        async def attempt(permit: Permit, panic: bool) -> str:
            tid = permit.target_id
            tried.append(tid)
            if tid == "primary" and self.clock.now() >= self.hang_at:
                await self.timers.sleep(self.TIMEOUT_S)
                outcome: Outcome = TIMED_OUT
            else:
                await self.timers.sleep(0.2)
                outcome = FAST
            self.store.release(permit, outcome)
            plan.record(AttemptRecord(tid, outcome, panic=panic))
            return tid

        await drive(plan, self.gates, attempt, self.clock.now, self.timers.sleep)
        self.results.append((began, plan.stop, tried, self.clock.now() - began))

    async def run(self, until: float, every_s: float) -> None:
        async def arrivals() -> None:
            tasks = []
            n = 0
            while n * every_s < until:
                at = n * every_s
                await self.timers.sleep(at - self.clock.now())
                tasks.append(asyncio.create_task(self.request()))
                n += 1
            await asyncio.gather(*tasks)

        main = asyncio.create_task(arrivals())
        await self.timers.run()
        await main


async def test_a_hang_costs_the_requests_in_flight_and_no_caller_gets_an_error() -> None:
    run = Steady(hang_at=4.0, hang=HangSettings())  # the defaults: floor 1 s, factor 4
    await run.run(until=9.0, every_s=0.02)  # 50 req/s
    assert len(run.results) == 450
    failed = [(t, stop) for t, stop, _, _ in run.results if stop is not Stop.SUCCESS]
    assert failed == []  # before: ~30 requests stuck on the primary got 502 (budget spent)
    hang_after = 1.0  # max(floor 1 s, 4 x 0.2 s)
    paid = [t for t, _, tried, took in run.results if took >= Steady.TIMEOUT_S]
    # Only the requests sent before the hang was detectable paid the timeout: ~rate x 1 s,
    # not rate x (the timeout + the 5 timeouts the breaker needs).
    # The last answer came back at 4.18 s (the request sent at 3.98 s): silent from then.
    detectable = 4.18 + hang_after
    assert all(4.0 <= t <= detectable for t in paid), paid
    assert 50 <= len(paid) <= 62
    # Requests sent after that went straight to the fallback: one attempt, no wait.
    later = [(tried, took) for t, _, tried, took in run.results if t > detectable + 0.001]
    assert later and all(tried == ["fallback"] and took < 0.3 for tried, took in later)
    # The timeouts then tripped the breaker, as before.
    assert run.store.snapshot(["primary"])["primary"].state is BreakerState.OPEN


async def test_without_detection_the_same_hang_costs_timeout_times_rate() -> None:
    """The comparison (and what the test above failed on before): detection off."""
    run = Steady(hang_at=4.0, hang=HangSettings(enabled=False))
    await run.run(until=9.0, every_s=0.02)
    paid = [t for t, _, _, took in run.results if took >= Steady.TIMEOUT_S]
    assert len(paid) > 95  # every request of the first 2 s, until 5 timeouts trip the breaker
