"""Mid-stream continuation: a committed stream that fails (cut, reset, stall, an upstream error
event, a run of malformed events) is completed on the next admitted candidate inside the same
client stream, so the client receives one complete answer.

    the failure becomes the committed attempt's outcome (health learns it)
    -> the plan decides again, as after any attempt (max attempts, budget, deadline,
       same-target retries, backoff): `AttemptPlan.reopen`
    -> the next target is asked to continue:
         `supports: [prefill]` -> the request + the delivered text as the final assistant
                                  message; its answer is the continuation
         otherwise (or after it refused prefill with a 400, remembered per target)
                               -> the request again; only what follows the delivered text is
                                  relayed, if the new answer begins with exactly that text
    -> a seam (`gateway.upstream.seam`) joins it to the client's stream; if that one fails
       too, the loop goes on from what the client has by then.

If nothing completes the answer the stream ends with the honest in-band error of the *first*
failure (a continuation's 400 or a diverging regeneration is never what the client is told).
Never continued: a non-streaming request, one with `n` > 1, a stream that carried tool calls
(or any output but text), a route with `continuation: false`, a client that left.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from gateway.config.model import Config, RouteConfig
from gateway.pipeline.settle import Attempted
from gateway.resilience.driving import drive
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Gates
from gateway.runtime.state import Runtime
from gateway.upstream.seam import Delivered, Seam, delivered
from health.outcome import UNHEARD, Outcome, OutcomeKind
from health.store import Permit

log = logging.getLogger("turnout.exchange")


class Continuing(Protocol):
    """What a continuation needs from the request it runs in (`gateway.pipeline.exchange`)."""

    @property
    def plan(self) -> AttemptPlan: ...

    @property
    def gates(self) -> Gates: ...

    @property
    def rt(self) -> Runtime: ...

    @property
    def config(self) -> Config: ...

    @property
    def route(self) -> RouteConfig: ...

    @property
    def payload(self) -> dict[str, Any]: ...

    @property
    def request_id(self) -> str: ...

    @property
    def operation(self) -> str: ...

    @property
    def sent(self) -> list[bytes]: ...

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]: ...

    def now(self) -> float: ...

    async def attempt(
        self,
        permit: Permit,
        *,
        panic: bool = False,
        hedge: bool = False,
        body: dict[str, Any] | None = None,
    ) -> Attempted: ...

    def judge(self, att: Attempted) -> Attempted: ...

    def settle(self, att: Attempted, outcome: Outcome) -> bool: ...

    async def relay_one(
        self, att: Attempted, response: web.StreamResponse, seam: Seam | None = None
    ) -> Outcome: ...


def _continuable(ex: Continuing) -> bool:
    payload = ex.payload
    n = payload.get("n")
    return ex.route.continuation and ex.operation == "chat" and (n is None or n == 1)


def prefill_body(payload: dict[str, Any], text: str) -> dict[str, Any]:
    """The request with the delivered text as the final assistant message (prefill), less
    its trailing whitespace: Anthropic refuses a final assistant turn that ends with any
    (the seam drops the whitespace the continuation begins with instead)."""
    messages = list(payload.get("messages") or [])
    turn = {"role": "assistant", "content": text.rstrip()}
    return {**payload, "messages": [*messages, turn]}


async def continue_stream(
    ex: Continuing, response: web.StreamResponse, target_id: str, cut: Outcome
) -> Outcome:
    """Complete the client's stream after `target_id`'s stream failed with `cut`. Returns the
    stream's end for the client: a success, or `cut` (the caller writes its error)."""
    if not _continuable(ex) or delivered(ex.sent) is None:
        return cut
    plan = ex.plan
    if plan.reopen(target_id, cut, ex.now(), ex.gates) is not None:
        return cut
    await ex.sleep(plan.wait_s)
    log.info(
        "continuing a stream cut on %s (%s) on the next candidate (request %s)",
        target_id,
        cut.summary,
        ex.request_id,
    )

    cuts = [1]  # committed streams that failed so far: billed, and in the usage estimate

    async def step(permit: Permit, panic: bool) -> Outcome:
        outcome, joined = await _continue_on(ex, response, permit, panic, cuts[0])
        if joined and outcome.kind is OutcomeKind.PROVIDER_FAILURE:
            cuts[0] += 1
        return outcome

    await drive(plan, ex.gates, step, ex.now, ex.sleep)
    last = plan.history[-1].outcome if plan.history else cut
    if last.kind is OutcomeKind.SUCCESS or last.reason in UNHEARD:
        return last
    return cut


async def _continue_on(
    ex: Continuing, response: web.StreamResponse, permit: Permit, panic: bool, cuts: int
) -> tuple[Outcome, bool]:
    """One continuation attempt, recorded in the plan like any attempt; its outcome and
    whether it reached the client (a stream that then fails is one more cut)."""
    have = delivered(ex.sent)
    assert have is not None  # checked before, and a seam only passes text on
    tid = permit.target_id
    target = ex.config.targets[tid]
    prefill = "prefill" in target.profile.supports and tid not in ex.rt.prefill_refused
    body = prefill_body(ex.payload, have.text) if prefill else dict(ex.payload)
    att = await ex.attempt(permit, panic=panic, body=body)
    result = att.result
    if result.stream is None:
        if prefill and result.outcome.kind is OutcomeKind.CALLER_ERROR:
            # It does not take prefill after all: remember it, and ask it for the whole answer
            # (the refusal is not an attempt of the plan's: the caller never sees it).
            ex.rt.prefill_refused.add(tid)
            ex.settle(att, result.outcome)
            log.warning(
                "%s refused prefill (%s): asking it for the whole answer (request %s)",
                tid,
                result.outcome.summary,
                ex.request_id,
            )
            again = ex.gates.acquire(tid)
            if again is None:
                ex.plan.record(AttemptRecord(tid, result.outcome, panic=panic))
                return result.outcome, False
            att = await ex.attempt(again, panic=panic, body=dict(ex.payload))
            result = att.result
            prefill = False
        if result.stream is None:
            return ex.judge(att).result.outcome, False
    seam = Seam(have, regenerate=not prefill, cuts=cuts)
    _mark(att, have, prefill)
    outcome = await ex.relay_one(att, response, seam)
    ex.plan.record(AttemptRecord(tid, outcome, panic=panic))
    if outcome.kind is not OutcomeKind.SUCCESS:
        log.info("continuation on %s ended: %s (request %s)", tid, outcome.summary, ex.request_id)
    return outcome, seam.joined


def _mark(att: Attempted, have: Delivered, prefill: bool) -> None:
    """The seam, as an event on the continuation's span."""
    span = att.span
    if span is not None and span.is_recording():
        span.add_event(
            "turnout.stream.seam",
            {
                "turnout.continuation.mode": "prefill" if prefill else "regenerate",
                "turnout.continuation.delivered_chars": len(have.text),
            },
        )
