"""Hedging: when the first candidate has no first token after a delay, race a second one.

The first attempt that settles the request (a success, or a caller error to pass through)
wins; the other is cancelled (its connection closes) and recorded as the loser, neutral for
health. A failure on the way is judged like any attempt. Whatever ends the step (an answer,
the client leaving), no attempt is left running.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from gateway.config.model import Hedge
from gateway.pipeline.settle import Attempted
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Gates
from health.outcome import HEDGE_LOST, OutcomeKind
from health.store import HealthStore, Permit

log = logging.getLogger("turnout.exchange")


class Racer(Protocol):
    """What a hedged step needs from the request it runs in (`gateway.pipeline.exchange`)."""

    @property
    def plan(self) -> AttemptPlan: ...

    @property
    def gates(self) -> Gates: ...

    @property
    def request_id(self) -> str: ...

    async def attempt(self, permit: Permit, *, hedge: bool = False) -> Attempted: ...

    def judge(self, att: Attempted) -> Attempted:
        """Record the attempt's outcome in the plan and settle it."""

    def drop(self, att: Attempted) -> None:
        """A loser that got an answer anyway: close it, settle it neutral."""


def hedge_delay(hedge: Hedge, store: HealthStore, target_id: str) -> float:
    """The fixed delay, or the target's p95 time to first token if later (`use_p95`)."""
    if not hedge.use_p95:
        return hedge.after_s
    p95_ms = store.snapshot([target_id], detailed=True)[target_id].ttft_ms_p95
    return hedge.after_s if p95_ms is None else max(hedge.after_s, p95_ms / 1000.0)


async def race(racer: Racer, first: Permit, delay_s: float) -> Attempted:
    first_task = asyncio.create_task(racer.attempt(first))
    tasks = {first_task}
    second: Permit | None = None
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay_s)
        if done:
            tasks.clear()
            return racer.judge(first_task.result())
        second = racer.plan.hedge(racer.gates, first.target_id)
        if second is None:
            att = await first_task
            tasks.clear()
            return racer.judge(att)
        log.info(
            "hedging %s with %s (request %s)", first.target_id, second.target_id, racer.request_id
        )
        tasks.add(asyncio.create_task(racer.attempt(second, hedge=True)))
        last: Attempted | None = None
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                att = t.result()
                kind = att.result.outcome.kind
                if kind is OutcomeKind.SUCCESS or kind is OutcomeKind.CALLER_ERROR:
                    for other in done - {t}:  # a second winner in the same instant: the loser
                        lost = other.result()
                        racer.drop(lost)
                        racer.plan.record(
                            AttemptRecord(lost.permit.target_id, HEDGE_LOST, hedge=True)
                        )
                    return racer.judge(att)
                last = racer.judge(att)
        assert last is not None
        return last
    finally:
        if tasks:
            await _cancel_losers(racer, tasks, (first, second))


async def _cancel_losers(
    racer: Racer, tasks: set[asyncio.Task[Attempted]], permits: tuple[Permit | None, ...]
) -> None:
    """Cancel the attempts still running and account for them; one that finished before its
    cancel landed is settled as the loser it is."""
    for t in tasks:
        t.cancel()
    for p in permits:
        if p is not None and p.target_id not in racer.plan.tried:
            racer.plan.record(AttemptRecord(p.target_id, HEDGE_LOST, hedge=True))
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Attempted):
            racer.drop(result)
