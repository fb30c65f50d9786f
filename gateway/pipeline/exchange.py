"""One request's attempts: the planner decides (`gateway.resilience.plan`), the loop drives
(`gateway.resilience.driving`), this module does the I/O.

attempt: build the upstream request for the picked target -> run it (or a hedged pair) ->
         record the classified outcome in the plan, settle the permit (health, span, metrics)
finish:  relay a committed stream, return a reply, or the one error that says what happened
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import msgspec
import orjson
from aiohttp import web
from opentelemetry import trace

from gateway.config.model import Config, RouteConfig, Timeouts
from gateway.edge.headers import client_headers, upstream_headers
from gateway.formats.translate import HEADER as TRANSLATION_HEADER
from gateway.formats.translate import translation
from gateway.limits.metering import metered
from gateway.pipeline import streamed
from gateway.pipeline.failure import failure
from gateway.pipeline.settle import Attempted, Learning, Listener, Settlement
from gateway.resilience.adaptive import adapted
from gateway.resilience.driving import drive
from gateway.resilience.hedging import hedge_delay, race
from gateway.resilience.permits import Permits
from gateway.resilience.plan import AttemptPlan, AttemptRecord, Gates, Limits, Stop
from gateway.resilience.same_target import SameTarget
from gateway.runtime.state import Runtime
from gateway.upstream.attempt import AttemptResult, AttemptSpec, run_attempt
from gateway.upstream.dialect import DIALECTS
from gateway.upstream.seam import Seam
from health.breaker import Admission
from health.outcome import (
    CLIENT_GONE,
    HEDGE_LOST,
    INTERNAL,
    Outcome,
    OutcomeKind,
    context_exceeded,
)
from health.signals import TargetHealth
from health.store import Permit
from policies.types import Policy, Ranked

log = logging.getLogger("turnout.exchange")

_NO_RESULT = AttemptResult(CLIENT_GONE)


class Ask(msgspec.Struct, frozen=True):
    """What the proxy resolved for one request: where it may go and how long it may take."""

    request_id: str
    operation: str  # chat | completions | embeddings
    upstream_path: str  # under the provider's base URL, e.g. /chat/completions
    payload: dict[str, Any]  # the parsed body; `model` is set per attempt
    route: RouteConfig
    ranked: list[Ranked]
    deadline: float | None  # loop time, or None: no deadline
    policy: Policy | None = None  # told what happened, if it learns (adaptive)
    client: str = ""  # the client key's name (clients:), "" without keys: who may judge it
    ingress: str = "openai"  # the client's wire format (gateway.edge.ingress)


@functools.lru_cache(maxsize=256)
def _limits(max_attempts: int, base_s: float, cap_s: float, stream: bool) -> Limits:
    """The plan's limits of a request without a deadline (frozen: shared)."""
    return Limits(max_attempts, base_s, cap_s, None, stream)


class Exchange:
    def __init__(
        self,
        request: web.Request,
        rt: Runtime,
        config: Config,
        ask: Ask,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.request = request
        self.rt = rt
        self.config = config
        self.route = route = ask.route
        self.payload = ask.payload
        self.upstream_path = ask.upstream_path
        self.request_id = ask.request_id
        self.operation = ask.operation
        self.ask_client = ask.client
        self.stream = ask.payload.get("stream") is True
        self.ingress = ask.ingress
        self.foreign = config.foreign_to[ask.ingress]  # targets the request is translated for
        self.dialect = DIALECTS[ask.ingress]  # how the client's stream reads
        self.loop = rt.loop or asyncio.get_running_loop()  # the first: no lookup
        res = config.resilience
        if ask.deadline is None:  # the usual request: one value per route and kind
            limits = _limits(route.max_attempts, res.backoff_base_s, res.backoff_cap_s, self.stream)
        else:
            limits = Limits(
                route.max_attempts, res.backoff_base_s, res.backoff_cap_s, ask.deadline, self.stream
            )
        self.plan = AttemptPlan([r.candidate for r in ask.ranked], limits)
        self.sleep = sleep
        permits = self.permits = Permits(rt.store)  # every permit goes back, on every path
        self.panic = res.panic
        learning = Learning.of(ask.policy)
        listeners: tuple[Listener, ...] = (
            (rt.telemetry,) if learning is None else (rt.telemetry, learning)
        )
        listeners = metered(self, listeners)  # gateway.limits: the client's tokens and spend
        self.settlement = Settlement(permits, listeners, self.loop.time)
        self._context_error: Attempted | None = None
        self.sent: list[bytes] = []  # the data events a committed stream sent the client
        self.translations: dict[str, str] = {}  # target -> how its request was translated

    def now(self) -> float:
        return self.loop.time()

    # -- the planner's gates (`gateway.resilience.plan.Gates`): health and the budget -------

    @property
    def gates(self) -> Gates:
        """This exchange (a property, not an attribute: `self.gates = self` would make every
        exchange a reference cycle, freed only by the cyclic collector)."""
        return self

    def acquire(self, target_id: str) -> Permit | None:
        return self.permits.acquire(target_id)

    def force_acquire(self, target_id: str) -> Permit:
        return self.permits.force_acquire(target_id)

    def admission(self, target_id: str) -> Admission:
        return self.rt.store.admission(target_id)

    def warmth(self, target_id: str) -> float:
        return self.rt.store.warmth(target_id)

    def same_target(self, target_id: str) -> SameTarget:
        return SameTarget.of(self.config, self.route, target_id)

    def spend(self) -> bool:
        return self.rt.budget.try_spend()

    def panic_free(self, target_id: str) -> bool:
        return target_id not in self.rt.panicking

    def settle(self, att: Attempted, outcome: Outcome) -> bool:
        return self.settlement.settle(att, outcome)

    async def run(self) -> web.StreamResponse:
        cancelled = False
        try:
            self.rt.budget.on_request()
            last = await drive(self.plan, self.gates, self._try, self.loop.time, self.sleep)
            return await self._finish(last)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self.settlement.permits.close(cancelled)  # every permit goes back, on every path

    # -- attempts ----------------------------------------------------------------------------

    async def _try(self, permit: Permit, panic: bool) -> Attempted:
        """One step of the loop: an attempt (or a hedged pair), recorded in the plan."""
        if panic:  # one panic attempt per target at a time: a burst in an outage gets 503s
            self.rt.panicking.add(permit.target_id)
            try:
                return self.judge(await self.attempt(permit, panic=True))
            finally:
                self.rt.panicking.discard(permit.target_id)
        hedge = self.route.hedge
        if hedge is not None and self.plan.remaining():
            return await race(self, permit, hedge_delay(hedge, self.rt.store, permit.target_id))
        return self.judge(await self.attempt(permit))

    def _timeouts(self, provider: Timeouts, target_id: str) -> Timeouts:
        """The provider's phase timeouts with the route's overrides; first-token and idle
        limits from the target's p95 when adaptive (`gateway.resilience.adaptive`)."""
        overrides = self.route.timeouts
        t = dataclasses.replace(provider, **overrides) if overrides else provider
        if not t.adaptive.enabled:
            return t
        p95_s = self.rt.store.first_token_p95_s(target_id)
        return adapted(t, p95_s, final=self.plan.is_last(target_id))

    def _spec(self, target_id: str, body: dict[str, Any] | None = None) -> AttemptSpec:
        target = self.config.targets[target_id]
        provider = self.config.providers[target.provider]
        payload = self.payload if body is None else body
        payload["model"] = target.model
        path = self.upstream_path
        tr = None
        if target_id in self.foreign:  # another wire format: the answer comes back through tr
            tr = translation(
                payload,
                self.operation,
                provider.format,
                target.model,
                self.ingress,
                provider.max_tokens_field,
            )
        if tr is not None:
            payload, path = tr.body, tr.path
            self.translations[target_id] = tr.note
        return AttemptSpec(
            target=target,
            provider=provider,
            path=path,
            body=orjson.dumps(payload),
            headers=upstream_headers(self.request.headers, provider, self.request_id),
            stream=self.stream,
            timeouts=self._timeouts(provider.timeouts, target_id),
            deadline=self.plan.limits.deadline,
            heard=self.rt.store.heard if self.stream else None,  # a stream's first event
            translation=tr,
            dialect=self.dialect,
        )

    async def attempt(
        self,
        permit: Permit,
        *,
        panic: bool = False,
        hedge: bool = False,
        body: dict[str, Any] | None = None,
    ) -> Attempted:
        """One attempt on `permit`'s target with the request (or `body`: a continuation's)."""
        tel = self.rt.telemetry
        started = self.loop.time()
        span = trace.INVALID_SPAN  # not tracing: no attributes to build, nothing to end
        # The permit is released on every path: an exception of our own before or during the
        # attempt settles it as neutral (it said nothing about the target) and propagates.
        try:
            spec = self._spec(permit.target_id, body)
            if tel.tracing.recording:
                span = self._attempt_span(spec, permit, panic, hedge)
                tel.tracing.inject(spec.headers, span)
            result = await run_attempt(spec, self.rt.pool.session(spec.provider), self.loop)
        except asyncio.CancelledError:
            # The client went away, or this hedge lost: neutral for health either way.
            self.settlement.settle(
                Attempted(permit, _NO_RESULT, started, span=span),
                HEDGE_LOST if hedge else CLIENT_GONE,
            )
            raise
        except BaseException:
            self.settlement.settle(Attempted(permit, _NO_RESULT, started, span=span), INTERNAL)
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
                "turnout.translation": spec.translation.note if spec.translation else "",
                "turnout.retry_budget_left": round(self.rt.budget.left(), 1),
                "turnout.deadline_left_ms": -1
                if self.plan.limits.deadline is None
                else round((self.plan.limits.deadline - self.loop.time()) * 1000),
            },
        )

    def judge(self, att: Attempted) -> Attempted:
        """Record an attempt's outcome in the plan and settle it (a committed stream is
        settled after its relay)."""
        outcome = att.result.outcome
        tid = att.permit.target_id
        reply = att.result.reply
        context = (
            outcome.kind is OutcomeKind.CALLER_ERROR
            and reply is not None
            and context_exceeded(reply.status, reply.body)
        )
        self.plan.record(
            AttemptRecord(tid, outcome, att.panic, att.hedge), context_exceeded=context
        )
        if att.result.stream is not None:
            return att
        self.settlement.settle(att, outcome)
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

    def drop(self, att: Attempted) -> None:
        """A hedge's loser that got an answer anyway: close it, settle it neutral."""
        if att.result.stream is not None:
            att.result.stream.close()
        self.settlement.settle(att, HEDGE_LOST)

    # -- finishing ---------------------------------------------------------------------------

    def answer_headers(self, target_id: str) -> dict[str, str]:
        out = {
            "x-turnout-target": target_id,
            "x-turnout-attempts": str(len(self.plan.history)),
            # what the caller asked for; `model` in the body names the model that answered
            "x-turnout-alias": self.route.alias,
        }
        note = self.translations.get(target_id)
        if note is not None:  # what crossing wire formats cost: lossy, and what was dropped
            out[TRANSLATION_HEADER] = note
        return out

    async def _finish(self, att: Attempted | None) -> web.StreamResponse:
        if self.plan.stop not in (Stop.SUCCESS, Stop.PASS_THROUGH) and self._context_error:
            att = self._context_error  # no larger model answered: the caller must shorten it
        if att is not None:
            outcome = att.result.outcome
            if outcome.kind is OutcomeKind.SUCCESS:
                self.rt.answers.remember(
                    self.request_id, self.route.key, att.permit.target_id, self.ask_client
                )
            if att.result.stream is not None:
                return await streamed.answer_with_stream(self, att)
            reply = att.result.reply
            if reply is not None and outcome.kind in (
                OutcomeKind.SUCCESS,
                OutcomeKind.CALLER_ERROR,
            ):
                out = client_headers(reply.headers)
                out.update(self.answer_headers(att.permit.target_id))
                out["Content-Type"] = reply.content_type
                return web.Response(status=reply.status, body=reply.body, headers=out)
        self._fail()

    def _fail(self) -> NoReturn:
        if self.plan.stop is Stop.BUDGET:
            self.rt.telemetry.metrics.budget_exhausted.add(1, {"route": self.route.alias})

        def health() -> Mapping[str, TargetHealth]:
            return self.rt.store.snapshot(c.target_id for c in self.plan.ranked)

        raise failure(self.plan, health, self.config.resilience.deadline_header)

    async def relay_one(
        self, att: Attempted, response: web.StreamResponse, seam: Seam | None = None
    ) -> Outcome:
        """Relay one committed stream into `response` (a continuation's through `seam`),
        settle its attempt and return its outcome; its events join `sent`."""
        return await streamed.relay_one(self, att, response, seam)
