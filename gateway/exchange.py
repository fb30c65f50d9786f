"""One request's attempts: the planner decides (`gateway.plan`), the loop drives
(`gateway.driving`), this module does the I/O.

attempt: build the upstream request for the picked target -> run it (or a hedged pair) ->
         record the classified outcome in the plan, settle the permit (health, span, metrics)
finish:  relay a committed stream, return a reply, or the one error that says what happened
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from aiohttp import web
from opentelemetry import trace

from gateway.attempt import AttemptResult, AttemptSpec, Reply, run_attempt
from gateway.config.model import Config, RouteConfig, Timeouts
from gateway.driving import drive
from gateway.failure import failure
from gateway.headers import client_headers, upstream_headers
from gateway.permits import CLIENT_GONE, INTERNAL, Permits
from gateway.plan import AttemptPlan, AttemptRecord, Limits, Stop
from gateway.relay import relay_stream
from gateway.runtime import Runtime
from health.breaker import Admission
from health.outcome import FailureReason, Outcome, OutcomeKind
from health.signals import TargetHealth
from health.store import Permit
from policies.compose import observe
from policies.types import Observation, Policy, Ranked

log = logging.getLogger("turnout.exchange")

HEDGE_LOST = Outcome(OutcomeKind.NEUTRAL, FailureReason.HEDGE_LOST)
_NO_RESULT = AttemptResult(CLIENT_GONE)
_CONTEXT_MARKERS = (b"context_length_exceeded", b"maximum context length", b"context window")


@dataclass(frozen=True, slots=True)
class Attempted:
    permit: Permit
    result: AttemptResult
    started_s: float  # loop time: the one clock of the request path (uvloop's is cached)
    panic: bool = False
    hedge: bool = False
    span: Any = None  # the attempt's CLIENT span, ended when its outcome is settled


@dataclass(frozen=True, slots=True)
class _Gates:
    """The planner's view of health and the budget, for one request."""

    permits: Permits
    rt: Runtime
    panic: bool

    def acquire(self, target_id: str) -> Permit | None:
        return self.permits.acquire(target_id)

    def force_acquire(self, target_id: str) -> Permit:
        return self.permits.force_acquire(target_id)

    def admission(self, target_id: str) -> Admission:
        return self.rt.store.admission(target_id)

    def spend(self) -> bool:
        return self.rt.budget.try_spend()

    def panic_free(self, target_id: str) -> bool:
        return target_id not in self.rt.panicking


def is_context_error(reply: Reply | None) -> bool:
    """A provider's 'prompt too long for this model': another, larger model may take it."""
    if reply is None or reply.status not in (400, 413, 422):
        return False
    body = reply.body.lower()
    return any(m in body for m in _CONTEXT_MARKERS)


class Exchange:
    def __init__(
        self,
        request: web.Request,
        rt: Runtime,
        config: Config,
        route: RouteConfig,
        ranked: list[Ranked],
        payload: dict[str, Any],
        upstream_path: str,
        operation: str,
        request_id: str,
        deadline: float | None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        policy: Policy | None = None,
    ) -> None:
        self.policy = policy  # told what happened, if it learns (adaptive)
        self.request = request
        self.rt = rt
        self.config = config
        self.route = route
        self.payload = payload
        self.upstream_path = upstream_path
        self.request_id = request_id
        self.stream = payload.get("stream") is True
        self.operation = operation
        self.loop = asyncio.get_running_loop()
        res = config.resilience
        limits = Limits(
            max_attempts=route.max_attempts,
            backoff_base_s=res.backoff_base_s,
            backoff_cap_s=res.backoff_cap_s,
            deadline=deadline,
            stream=self.stream,
        )
        self.plan = AttemptPlan([r.candidate for r in ranked], limits)
        self._sleep = sleep
        self.permits = Permits(rt.store)  # every permit goes back, on every path
        self.gates = _Gates(self.permits, rt, res.panic)
        self._context_error: Attempted | None = None

    async def run(self) -> web.StreamResponse:
        cancelled = False
        try:
            return await self._run()
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self.permits.close(cancelled)  # every permit goes back, on every path

    async def _run(self) -> web.StreamResponse:
        self.rt.budget.on_request()
        last = await drive(self.plan, self.gates, self._try, self.loop.time, self._sleep)
        return await self._finish(last)

    # -- attempts ----------------------------------------------------------------------------

    async def _try(self, permit: Permit, panic: bool) -> Attempted:
        """One step of the loop: an attempt (or a hedged pair), recorded in the plan."""
        if panic:  # one panic attempt per target at a time: a burst in an outage gets 503s
            self.rt.panicking.add(permit.target_id)
            try:
                return self._judge(await self._attempt(permit, panic=True))
            finally:
                self.rt.panicking.discard(permit.target_id)
        if self.route.hedge is not None and self.plan.remaining():
            return await self._hedged(permit)
        return self._judge(await self._attempt(permit))

    def _timeouts(self, provider: Timeouts) -> Timeouts:
        """The provider's phase timeouts with the route's overrides."""
        overrides = self.route.timeouts
        return dataclasses.replace(provider, **overrides) if overrides else provider

    def _spec(self, target_id: str) -> AttemptSpec:
        target = self.config.targets[target_id]
        provider = self.config.providers[target.provider]
        self.payload["model"] = target.model
        return AttemptSpec(
            target=target,
            provider=provider,
            path=self.upstream_path,
            body=orjson.dumps(self.payload),
            headers=upstream_headers(self.request.headers, provider, self.request_id),
            stream=self.stream,
            timeouts=self._timeouts(provider.timeouts),
            deadline=self.plan.limits.deadline,
        )

    async def _attempt(
        self, permit: Permit, *, panic: bool = False, hedge: bool = False
    ) -> Attempted:
        tel = self.rt.telemetry
        started = self.loop.time()
        span = trace.INVALID_SPAN  # not tracing: no attributes to build, nothing to end
        # The permit is released on every path: an exception of our own before or during the
        # attempt settles it as neutral (it said nothing about the target) and propagates.
        try:
            spec = self._spec(permit.target_id)
            if tel.tracing.recording:
                span = self._attempt_span(spec, permit, panic, hedge)
                tel.tracing.inject(spec.headers, span)
            result = await run_attempt(spec, self.rt.pool.session(spec.provider))
        except asyncio.CancelledError:
            # The client went away, or this hedge lost: neutral for health either way.
            self._settle(
                Attempted(permit, _NO_RESULT, started, span=span),
                HEDGE_LOST if hedge else CLIENT_GONE,
            )
            raise
        except BaseException:
            self._settle(Attempted(permit, _NO_RESULT, started, span=span), INTERNAL)
            raise
        return Attempted(permit, result, started, panic, hedge, span)

    def _attempt_span(self, spec: AttemptSpec, permit: Permit, panic: bool, hedge: bool) -> Any:
        return self.rt.telemetry.attempt_span(
            self.operation,
            spec.target.id,
            spec.provider.name,
            spec.target.model,
            spec.provider.base_url,
            {
                "turnout.attempt": len(self.plan.history) + 1,
                "turnout.probe": permit.probe,
                "turnout.hedge": hedge,
                "turnout.panic": panic,
                "turnout.retry_budget_left": round(self.rt.budget.left(), 1),
                "turnout.deadline_left_ms": -1
                if self.plan.limits.deadline is None
                else round((self.plan.limits.deadline - self.loop.time()) * 1000),
            },
        )

    def _settle(self, att: Attempted, outcome: Outcome) -> None:
        """An attempt is over: health learns its outcome, its span ends, metrics count it."""
        if not self.permits.release(att.permit, outcome):
            return  # settled already
        usage = att.result.usage
        if att.result.stream is not None:
            usage = att.result.stream.usage
        duration = self.loop.time() - att.started_s
        self.rt.telemetry.end_attempt(att.span, att.permit.target_id, outcome, duration, usage)
        if self.policy is not None and outcome.kind is not OutcomeKind.NEUTRAL:
            success = outcome.kind is OutcomeKind.SUCCESS
            if success or outcome.kind.fails_over:  # a caller error says nothing of the target
                observe(self.policy, Observation(att.permit.target_id, success, duration))

    def _judge(self, att: Attempted) -> Attempted:
        """Record an attempt's outcome in the plan and settle it (a committed stream is
        settled after its relay)."""
        outcome = att.result.outcome
        tid = att.permit.target_id
        context = outcome.kind is OutcomeKind.CALLER_ERROR and is_context_error(att.result.reply)
        self.plan.record(
            AttemptRecord(tid, outcome, att.panic, att.hedge), context_exceeded=context
        )
        if att.result.stream is not None:
            return att
        self._settle(att, outcome)
        if context:
            self._context_error = att  # passed through if no larger candidate can take it
        if outcome.kind.fails_over or context:
            log.info(
                "attempt %d on %s failed: %s (request %s)",
                len(self.plan.history),
                tid,
                outcome.summary,
                self.request_id,
            )
            self.rt.telemetry.failover(tid, outcome, len(self.plan.history))
        return att

    async def _hedged(self, first: Permit) -> Attempted:
        """Race a second candidate if the first has no first token after the hedge delay."""
        hedge = self.route.hedge
        assert hedge is not None
        delay = hedge.after_s
        if hedge.use_p95:
            h = self.rt.store.snapshot([first.target_id], detailed=True)[first.target_id]
            if h.ttft_ms_p95 is not None:
                delay = max(delay, h.ttft_ms_p95 / 1000.0)
        first_task = asyncio.create_task(self._attempt(first))
        tasks = {first_task}
        second: Permit | None = None
        try:  # whatever ends this step (an answer, the client leaving), no task is left behind
            done, _ = await asyncio.wait(tasks, timeout=delay)
            if done:
                tasks.clear()
                return self._judge(first_task.result())
            second = self.plan.hedge(self.gates, first.target_id)
            if second is None:
                att = await first_task
                tasks.clear()
                return self._judge(att)
            log.info(
                "hedging %s with %s (request %s)",
                first.target_id,
                second.target_id,
                self.request_id,
            )
            tasks.add(asyncio.create_task(self._attempt(second, hedge=True)))
            last: Attempted | None = None
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    att = t.result()
                    kind = att.result.outcome.kind
                    if kind is OutcomeKind.SUCCESS or kind is OutcomeKind.CALLER_ERROR:
                        for other in done - {t}:
                            self._discard(other.result())
                        return self._judge(att)
                    last = self._judge(att)
            assert last is not None
            return last
        finally:
            if tasks:
                await self._cancel_losers(tasks, (first, second))

    async def _cancel_losers(
        self, tasks: set[asyncio.Task[Attempted]], permits: tuple[Permit | None, ...]
    ) -> None:
        """Cancel the attempts still running (their connections close) and account for them;
        one that finished before its cancel landed is settled as the loser it is."""
        for t in tasks:
            t.cancel()
        for p in permits:
            if p is not None and p.target_id not in self.plan.tried:
                self.plan.record(AttemptRecord(p.target_id, HEDGE_LOST, hedge=True))
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Attempted):
                self._drop(result)

    def _discard(self, att: Attempted) -> None:
        """A second winner in the same instant: dropped, and recorded as the loser."""
        self._drop(att)
        self.plan.record(AttemptRecord(att.permit.target_id, HEDGE_LOST, hedge=True))

    def _drop(self, att: Attempted) -> None:
        """A hedge's loser that got an answer anyway: close it, settle it neutral."""
        if att.result.stream is not None:
            att.result.stream.close()
        self._settle(att, HEDGE_LOST)

    # -- finishing ---------------------------------------------------------------------------

    def _headers(self, target_id: str) -> dict[str, str]:
        out = {
            "x-turnout-target": target_id,
            "x-turnout-attempts": str(len(self.plan.history)),
            # what the caller asked for; `model` in the body names the model that answered
            "x-turnout-alias": self.route.alias,
        }
        return out

    async def _finish(self, att: Attempted | None) -> web.StreamResponse:
        if self.plan.stop not in (Stop.SUCCESS, Stop.PASS_THROUGH) and self._context_error:
            att = self._context_error  # no larger model answered: the caller must shorten it
        if att is not None:
            outcome = att.result.outcome
            if outcome.kind is OutcomeKind.SUCCESS:
                self.rt.remember(self.request_id, self.route.key, att.permit.target_id)
            if att.result.stream is not None:
                return await self._relay(att)
            reply = att.result.reply
            if reply is not None and outcome.kind in (
                OutcomeKind.SUCCESS,
                OutcomeKind.CALLER_ERROR,
            ):
                out = client_headers(reply.headers)
                out.update(self._headers(att.permit.target_id))
                out["Content-Type"] = reply.content_type
                return web.Response(status=reply.status, body=reply.body, headers=out)
        self._fail()

    def _fail(self) -> NoReturn:
        if self.plan.stop is Stop.BUDGET:
            self.rt.telemetry.metrics.budget_exhausted.add(1, {"route": self.route.alias})

        def health() -> Mapping[str, TargetHealth]:
            return self.rt.store.snapshot(c.target_id for c in self.plan.ranked)

        raise failure(self.plan, health, self.config.resilience.deadline_header)

    async def _relay(self, att: Attempted) -> web.StreamResponse:
        stream = att.result.stream
        assert stream is not None
        tid = att.permit.target_id
        response = web.StreamResponse(
            status=stream.response.status,
            headers={
                **client_headers(stream.headers),
                **self._headers(tid),
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        final = CLIENT_GONE
        try:
            await response.prepare(self.request)
            final = await relay_stream(stream, response)
            if final.reason not in (FailureReason.CLIENT_GONE, FailureReason.SHUTDOWN):
                await response.write_eof()
        except ConnectionError:
            final = CLIENT_GONE
        finally:
            stream.close()
            self._settle(att, final)
            if final.kind is OutcomeKind.PROVIDER_FAILURE:
                log.warning(
                    "stream from %s failed after the first byte: %s (request %s)",
                    tid,
                    final.summary,
                    self.request_id,
                )
        return response
