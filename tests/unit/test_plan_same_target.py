"""Same-target retries in the real loop, in virtual time (issue 14): a one-off 500, a reset or
a short 429 is retried on the target that failed before the loop fails over; timeouts, refused
connections, long Retry-Afters and a deadline that cannot afford the wait fail over at once.
Every retry is an attempt (`max_attempts`) and a retry (the budget)."""

from __future__ import annotations

import pytest

from gateway.config import load_text
from gateway.resilience.dry_run import would_try
from gateway.resilience.plan import AttemptRecord, Stop
from gateway.resilience.same_target import SameTarget
from health.breaker import Admission
from health.outcome import FailureReason, Outcome, classify_status, provider_failure
from tests.unit.planning import FAIL_503, OK, Loop, ranked

ONE = SameTarget(retries=1, retry_after_wait_s=2.0)
RESET = provider_failure(FailureReason.CONNECTION_RESET)


@pytest.mark.parametrize(
    "transient",
    [classify_status(500), FAIL_503, classify_status(502), RESET],
    ids=["500", "503", "502", "reset"],
)
async def test_a_one_off_transient_failure_is_answered_by_the_same_target(
    transient: Outcome,
) -> None:
    loop = Loop(ranked("a", "b"), {"a": [transient, OK], "b": OK}, same=ONE)
    assert await loop.run() == ("a", OK)
    assert loop.targets == ["a", "a"]
    assert 0.0 <= loop.waits[0] <= 0.05  # the usual full-jitter backoff
    loop.assert_timeline()
    assert loop.gates.budget.left() == pytest.approx(10.0 + 0.2 - 1)  # one retry spent


async def test_a_second_transient_failure_fails_over() -> None:
    loop = Loop(ranked("a", "b"), {"a": [FAIL_503, FAIL_503], "b": OK}, same=ONE)
    assert await loop.run() == ("b", OK)
    assert loop.targets == ["a", "a", "b"]


@pytest.mark.parametrize(
    "outcome",
    [
        provider_failure(FailureReason.FIRST_TOKEN_TIMEOUT),
        provider_failure(FailureReason.IDLE_TIMEOUT),
        provider_failure(FailureReason.CONNECT_REFUSED),
        provider_failure(FailureReason.MALFORMED),
        classify_status(501),
    ],
    ids=["first-token-timeout", "idle-timeout", "refused", "malformed", "501"],
)
async def test_what_is_not_transient_fails_over_at_once(outcome: Outcome) -> None:
    loop = Loop(ranked("a", "b"), {"a": outcome, "b": OK}, same=ONE)
    assert await loop.run() == ("b", OK)
    assert loop.targets == ["a", "b"]


async def test_a_short_retry_after_is_waited_out_on_the_same_target() -> None:
    throttled = classify_status(429, retry_after="1.5")
    loop = Loop(ranked("a", "b"), {"a": [throttled, OK], "b": OK}, same=ONE)
    assert await loop.run() == ("a", OK)
    assert loop.targets == ["a", "a"]
    # exactly the Retry-After (and 20 ms, so the store's throttle has surely expired)
    assert loop.waits == [pytest.approx(1.52)]
    assert loop.starts[1][1] == pytest.approx(100.0 + 0.2 + 1.52)


async def test_a_long_retry_after_fails_over_at_once() -> None:
    throttled = classify_status(429, retry_after="30")
    loop = Loop(ranked("a", "b"), {"a": throttled, "b": OK}, same=ONE)
    assert await loop.run() == ("b", OK)
    assert loop.targets == ["a", "b"]
    assert loop.waits[0] <= 0.05


async def test_a_429_without_retry_after_fails_over_at_once() -> None:
    loop = Loop(ranked("a", "b"), {"a": classify_status(429), "b": OK}, same=ONE)
    assert await loop.run() == ("b", OK)
    assert loop.targets == ["a", "b"]


async def test_the_wait_is_skipped_when_the_deadline_cannot_afford_it() -> None:
    throttled = classify_status(429, retry_after="1.5")
    loop = Loop(ranked("a", "b"), {"a": throttled, "b": OK}, same=ONE, deadline=101.5)
    assert await loop.run() == ("b", OK)
    assert loop.targets == ["a", "b"]


async def test_a_persistent_429_gets_no_more_than_its_retries() -> None:
    throttled = classify_status(429, retry_after="1")
    two = SameTarget(retries=2, retry_after_wait_s=2.0)
    loop = Loop(ranked("a", "b"), {"a": throttled, "b": OK}, same=two)
    assert await loop.run() == ("b", OK)
    assert loop.targets == ["a", "a", "a", "b"]


async def test_same_target_retries_do_not_take_attempts_from_the_fallbacks() -> None:
    # max_attempts counts targets: a retry on the same target never costs a fallback its turn
    loop = Loop(ranked("a", "b", "c"), {"a": FAIL_503, "b": FAIL_503, "c": OK}, same=ONE)
    assert await loop.run() == ("c", OK)
    assert loop.targets == ["a", "a", "b", "b", "c"]
    assert loop.gates.budget.left() == pytest.approx(10.0 + 0.2 - 4)  # each one a retry


async def test_max_attempts_still_bounds_the_targets_tried() -> None:
    loop = Loop(ranked("a", "b", "c"), dict.fromkeys("abc", FAIL_503), same=ONE, max_attempts=2)
    await loop.run()
    assert loop.targets == ["a", "a", "b", "b"]
    assert loop.plan.stop is Stop.MAX_ATTEMPTS


async def test_a_single_candidate_is_retried_rather_than_exhausted() -> None:
    loop = Loop(ranked("a"), {"a": [FAIL_503, OK]}, same=ONE)
    assert await loop.run() == ("a", OK)
    assert loop.targets == ["a", "a"]


async def test_no_same_target_retries_fails_over_at_once() -> None:
    loop = Loop(ranked("a", "b"), {"a": FAIL_503, "b": OK}, same=SameTarget(0, 0.0))
    assert await loop.run() == ("b", OK)
    assert loop.targets == ["a", "b"]


async def test_a_target_whose_breaker_opened_during_the_wait_is_left_for_the_next() -> None:
    loop = Loop(ranked("a", "b"), {"a": FAIL_503, "b": OK}, same=ONE)
    first = loop.plan.pick(loop.gates)
    assert first is not None and first[0].target_id == "a"
    loop.plan.record(AttemptRecord("a", FAIL_503))
    assert loop.plan.after(loop.clock.now(), loop.gates) is None
    assert loop.plan.again == "a"
    loop.gates.denied.add("a")  # its breaker opened while we waited
    second = loop.plan.pick(loop.gates)
    assert second is not None and second[0].target_id == "b"


def test_the_dry_run_shows_same_target_retries() -> None:
    allow = lambda _t: Admission.ALLOW  # noqa: E731
    order = would_try(ranked("a", "b"), 3, allow, panic=True, retries=lambda _t: ONE)
    assert order == ["a", "a", "b", "b"]


def test_the_route_overrides_the_provider_which_overrides_resilience() -> None:
    config = load_text(
        """
providers:
  p: {base_url: "http://127.0.0.1:1/v1", same_target_retries: 2}
  q: {base_url: "http://127.0.0.1:2/v1"}
resilience: {same_target_retries: 0, retry_after_wait_s: 5}
routes:
  - {alias: x, candidates: [m@p, m@q]}
  - {alias: y, candidates: [m@p, m@q], same_target_retries: 3, retry_after_wait_s: 0}
""",
        env={},
    )
    x, y = config.routes
    assert SameTarget.of(config, x, "m@p") == SameTarget(2, 5.0)  # the provider's
    assert SameTarget.of(config, x, "m@q") == SameTarget(0, 5.0)  # resilience's
    assert SameTarget.of(config, y, "m@p") == SameTarget(3, 0.0)  # the route's
