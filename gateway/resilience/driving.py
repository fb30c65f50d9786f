"""The attempt loop: tenacity drives it, the planner decides, the caller's `attempt` does I/O.

    pick -> attempt (records its outcome in the plan) -> after: stop, or wait and pick again

Every decision is the planner's (`gateway.resilience.plan`): `after` sets `plan.stop` or `plan.wait_s`
once per attempt, so tenacity's strategies here are pure reads of the plan and the order in
which tenacity calls them does not matter. The clock and sleep are injected: the tests drive
this very loop in virtual time with a fake `attempt`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import tenacity

from gateway.resilience.plan import AttemptPlan, Gates
from health.store import Permit

T = TypeVar("T")


async def drive(
    plan: AttemptPlan,
    gates: Gates,
    attempt: Callable[[Permit, bool], Awaitable[T]],
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> T | None:
    """Run attempts until the plan stops; the last attempt's result (None if none was made).

    `attempt(permit, panic)` sends one attempt (or a hedged pair) and records what happened
    in the plan; it owns the permit from then on."""
    picked = plan.pick(gates)  # the first step, inline: most requests make only this one
    first: T | None = None
    if picked is not None:
        first = await attempt(*picked)
        plan.after(clock(), gates)
    if plan.stop is not None:
        return first  # most requests end here: no closure, no controller built
    return await _retrying(plan, gates, attempt, clock, sleep, first)


async def _retrying(
    plan: AttemptPlan,
    gates: Gates,
    attempt: Callable[[Permit, bool], Awaitable[T]],
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    first: T | None,
) -> T | None:
    """A retry is wanted: from here on tenacity drives (its first call replays the step
    `drive` made)."""
    last = first

    async def step() -> None:
        nonlocal last
        picked = plan.pick(gates)
        if picked is None:
            return  # plan.stop is EXHAUSTED
        last = await attempt(*picked)
        plan.after(clock(), gates)

    replayed = False

    async def again() -> None:
        nonlocal replayed
        if replayed:
            await step()
        replayed = True

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_never,  # every stop reason is the plan's
        wait=lambda _state: plan.wait_s,
        retry=tenacity.retry_if_result(lambda _result: plan.stop is None),
        sleep=sleep,
        reraise=True,
    )
    await retrying(again)
    return last
