"""Classifying how an attempt ended, and settling it: the real rules and the real Settlement
(a memory store, the request's permits), in virtual time."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.pipeline.settle import Attempted, Learning, Settlement
from gateway.resilience.permits import Permits
from gateway.telemetry.hub import Usage
from gateway.upstream.attempt import AttemptResult
from health.clock import ManualClock
from health.memory import MemoryStore
from health.outcome import (
    CLIENT_GONE,
    DEADLINE,
    FailureReason,
    Outcome,
    OutcomeKind,
    blamed,
    classify_status,
    context_exceeded,
    provider_failure,
    stalled,
    succeeded,
)
from policies.registry import make_policy
from policies.types import Observation


def test_a_stall_before_the_attempt_s_end_is_idle_and_at_its_end_is_total() -> None:
    assert stalled(9.9, 10.0, math.inf).reason is FailureReason.IDLE_TIMEOUT
    assert stalled(10.0, 10.0, math.inf).reason is FailureReason.TOTAL_TIMEOUT
    assert stalled(10.0, 10.0, math.inf).kind is OutcomeKind.PROVIDER_FAILURE


def test_a_stall_at_the_caller_s_deadline_is_neutral() -> None:
    # The attempt's end is the caller's deadline (the sooner of the two): not the provider's.
    assert stalled(5.0, 5.0, 5.0) is DEADLINE
    assert stalled(4.0, 5.0, 5.0).reason is FailureReason.IDLE_TIMEOUT  # silent too long


@pytest.mark.parametrize(
    "reason",
    [
        FailureReason.HEADERS_TIMEOUT,
        FailureReason.FIRST_TOKEN_TIMEOUT,
        FailureReason.IDLE_TIMEOUT,
        FailureReason.TOTAL_TIMEOUT,
    ],
)
def test_only_timers_are_blamed_on_the_deadline(reason: FailureReason) -> None:
    timer = provider_failure(reason)
    assert blamed(timer, 3.0, 3.0) is DEADLINE
    assert blamed(timer, 2.9, 3.0) is timer
    refused = provider_failure(FailureReason.CONNECT_REFUSED)
    assert blamed(refused, 3.0, 3.0) is refused  # a refusal is the provider's, deadline or not


def test_context_length_errors_are_recognised_only_on_caller_statuses() -> None:
    body = b'{"error": {"code": "context_length_exceeded", "message": "too long"}}'
    assert context_exceeded(400, body)
    assert context_exceeded(413, b"This model's Maximum Context Length is 8192 tokens")
    assert not context_exceeded(500, body)  # a 500 is the provider's failure, whatever it says
    assert not context_exceeded(400, b'{"error": {"message": "bad temperature"}}')


def test_success_is_the_same_value_from_the_status_table_and_the_stream() -> None:
    assert classify_status(200, latency_s=0.5) == succeeded(200, latency_s=0.5)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, OutcomeKind, float, Usage | None]] = []

    def settled(
        self, span: Any, target_id: str, outcome: Outcome, duration_s: float, usage: Usage | None
    ) -> None:
        self.calls.append((target_id, outcome.kind, duration_s, usage))


def _setup() -> tuple[ManualClock, MemoryStore, Permits]:
    clock = ManualClock(100.0)
    store = MemoryStore(clock=clock)
    store.track(["a", "b"])
    return clock, store, Permits(store)


def test_an_attempt_is_settled_once_health_first_then_every_listener() -> None:
    clock, store, permits = _setup()
    first, second = Recorder(), Recorder()
    settlement = Settlement(permits, (first, second), clock.now)
    permit = permits.acquire("a")
    assert permit is not None
    usage = Usage(input_tokens=3, output_tokens=5)
    att = Attempted(permit, AttemptResult(succeeded(200), usage=usage), started_s=clock.now())
    clock.advance(0.25)
    assert store.snapshot(["a"])["a"].in_flight == 1
    assert settlement.settle(att, provider_failure(FailureReason.CUT))
    assert store.snapshot(["a"])["a"].in_flight == 0  # health took it back
    assert store.snapshot(["a"])["a"].consecutive_failures == 1
    assert first.calls == [("a", OutcomeKind.PROVIDER_FAILURE, 0.25, usage)]
    assert second.calls == first.calls
    # A second settlement of the same attempt (a hedge loser, the request's end) counts nowhere.
    assert not settlement.settle(att, CLIENT_GONE)
    assert len(first.calls) == 1 and len(second.calls) == 1
    assert store.snapshot(["a"])["a"].consecutive_failures == 1
    assert len(permits) == 0


def test_learning_is_told_successes_and_failovers_but_not_caller_errors_or_neutral() -> None:
    seen: list[Observation] = []
    learning = Learning(seen.append)
    for outcome in (
        succeeded(200),
        provider_failure(FailureReason.CUT),
        classify_status(429),
        classify_status(400),
        CLIENT_GONE,
    ):
        learning.settled(None, "a", outcome, 0.5, None)
    assert [(o.target_id, o.success) for o in seen] == [("a", True), ("a", False), ("a", False)]


def test_only_a_policy_that_learns_gets_a_learning_listener() -> None:
    assert Learning.of(make_policy("priority")) is None
    assert Learning.of(None) is None
    assert Learning.of(make_policy("adaptive")) is not None
