"""A request pays only for what its route's policy reads (`policies.types.reads`): no task
rules for a policy that does not read the task, availability alone from health for one that
reads no more, and one decision kept for a policy that reads nothing while every candidate is
available. What is skipped must never change a decision: checked against the full path."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest

from gateway.config import load_data
from gateway.pipeline.routing import find_route, route_request
from gateway.runtime.state import Runtime
from health.breaker import BreakerState
from health.clock import ManualClock
from health.memory import MemoryStore
from health.outcome import FailureReason, Outcome, classify_status, provider_failure, succeeded
from health.settings import HangSettings, HealthSettings
from health.signals import TargetHealth
from policies.compose import Composite, WeightedScorer
from policies.features import InvalidFeature, extract
from policies.loading import build_policy
from policies.ordering import Priority
from policies.registry import SHORTHANDS
from policies.types import (
    CHANCE,
    EVERYTHING,
    HEALTH,
    REQUEST,
    TASK,
    Candidate,
    RequestFeatures,
    Score,
    reads,
)

CODE_PROMPT = {"model": "r", "messages": [{"role": "user", "content": "Fix this Python traceback"}]}


# --- health: availability alone, and the one rule ----------------------------------------------


def store_at(clock: ManualClock) -> MemoryStore:
    settings = HealthSettings(hang=HangSettings(factor=4.0, floor_s=1.0))
    return MemoryStore(settings, clock=clock, rng=random.Random(1))


def settle(store: MemoryStore, tid: str, outcome: Outcome, times: int = 1) -> None:
    """`times` attempts with `outcome`, or fewer if the target stops admitting them."""
    for _ in range(times):
        permit = store.acquire(tid)
        if permit is None:
            return
        store.release(permit, outcome)


def states(clock: ManualClock) -> dict[str, MemoryStore]:
    """One store per condition a target can be in, each with target `t`."""
    out = {}
    fast = succeeded(200, latency_s=0.2, ttft_s=0.2)
    out["healthy"] = store_at(clock)
    settle(out["healthy"], "t", fast, 3)
    out["open"] = store_at(clock)
    settle(out["open"], "t", classify_status(503), 10)
    out["throttled"] = store_at(clock)
    settle(out["throttled"], "t", classify_status(429, retry_after="30"))
    out["misconfigured"] = store_at(clock)
    settle(out["misconfigured"], "t", classify_status(401))
    out["hung"] = store_at(clock)
    settle(out["hung"], "t", fast)
    assert out["hung"].acquire("t") is not None  # sent, and nothing comes back
    out["failing, closed"] = store_at(clock)
    settle(out["failing, closed"], "t", provider_failure(FailureReason.CUT))
    return out


@pytest.mark.parametrize("later_s", [0.0, 2.0, 120.0])  # now, past the hang limit, open time over
def test_availability_alone_says_what_the_full_view_says(later_s: float) -> None:
    clock = ManualClock(100.0)
    stores = states(clock)
    clock.advance(later_s)
    seen = set()
    for name, store in stores.items():
        full = store.snapshot(["t"])["t"]
        light = store.snapshot(["t"], availability=True)["t"]
        assert light.why_unavailable() == full.why_unavailable(), name
        if full.why_unavailable() is not None:
            assert light == full, name  # an unavailable target always has its whole view
        seen.add(full.why_unavailable() is None)
    assert seen == {True, False}  # the conditions above cover both answers


def test_an_available_target_reads_as_idle_without_building_a_view() -> None:
    clock = ManualClock(100.0)
    store = states(clock)["healthy"]
    first = store.snapshot(["t", "never-seen"], availability=True)
    again = store.snapshot(["t", "never-seen"], availability=True)
    assert first["t"] is again["t"] and first["never-seen"] is again["never-seen"]
    assert first["t"] == TargetHealth.unknown("t")
    assert store.snapshot(["t"])["t"].window_calls == 3  # the full view still has the numbers


# --- the composite: one kept decision for a policy that reads nothing ---------------------------


@dataclass(frozen=True)
class ByOrder:
    """Priority's scores, without a `reads` declaration: the composite must assume it reads
    everything (the full path, every time)."""

    name: str = "by_order"

    def score(
        self, request: RequestFeatures, candidates: Sequence[Candidate], health: object
    ) -> list[Score]:
        n = len(candidates)
        return [Score((n - i) / n) for i in range(n)]


ABC = [Candidate(t, "p", t) for t in ("a", "b", "c")]


def views(**down: float) -> dict[str, TargetHealth]:
    """Idle views; the named targets' breakers open for that many seconds."""
    out = {}
    for c in ABC:
        h = TargetHealth.unknown(c.target_id)
        if c.target_id in down:
            h = replace(h, state=BreakerState.OPEN, open_for_s=down[c.target_id])
        out[c.target_id] = h
    return out


def test_what_the_built_in_policies_declare() -> None:
    rng = random.Random(1)
    got = {name: reads(build_policy(name, "policy", rng=rng)[0]) for name in SHORTHANDS}
    assert got["priority"] == frozenset()
    assert got["round_robin"] == got["weighted"] == got["adaptive"] == {CHANCE}
    assert TASK in got["capability"] and TASK in got["cost_quality"]
    assert HEALTH in got["health"] and HEALTH in got["least_latency"]
    assert reads(Composite("x", (), (WeightedScorer(ByOrder()),))) == EVERYTHING
    assert CHANCE in reads(Composite("x", (), (WeightedScorer(Priority()),), "random"))


def test_a_declaration_naming_something_unknown_reads_everything() -> None:
    @dataclass(frozen=True)
    class Declares:
        reads: object

    assert reads(Declares(frozenset({"health"}))) == {HEALTH}
    for wrong in (frozenset({"HEALTH"}), frozenset({"latency"}), {"health"}, "health"):
        assert reads(Declares(wrong)) == EVERYTHING, wrong  # a typo must not starve a part


def test_a_policy_that_reads_nothing_keeps_its_decision_while_all_are_available() -> None:
    fast = Composite("priority", (), (WeightedScorer(Priority()),))
    full = Composite("priority", (), (WeightedScorer(ByOrder()),))
    req = RequestFeatures("chat", 10)
    scenarios = [views(), views(b=5.0), views(a=9.0, b=5.0), views(), views(a=1.0, b=1.0, c=1.0)]
    kept = None
    for health in scenarios:
        got = fast.decide(req, ABC, health, explain=False)
        want = full.decide(req, ABC, health, explain=False)
        assert [(r.candidate.target_id, r.score) for r in got.ranked] == [
            (r.candidate.target_id, r.score) for r in want.ranked
        ]
        if all(h.why_unavailable() is None for h in health.values()):
            kept = kept or got
            assert got is kept  # made once, kept
        else:
            assert got is not kept
    assert [r.candidate.target_id for r in fast.decide(req, ABC, views(b=5.0)).ranked] == [
        "a",
        "c",
        "b",
    ]
    other = fast.decide(RequestFeatures("chat", 10, task="code"), ABC, views(), explain=False)
    assert other.task == "code" and other.ranked == kept.ranked  # type: ignore[union-attr]


# --- features and routing -----------------------------------------------------------------------


@pytest.mark.parametrize("needs", [frozenset(), frozenset({REQUEST})])
def test_without_the_task_the_rules_do_not_run_but_overrides_still_count(
    needs: frozenset[str],
) -> None:
    assert extract("chat", CODE_PROMPT, 100).task == "code"
    assert extract("chat", CODE_PROMPT, 100, reads=needs).task == "chat"
    given = {"x-turnout-task": "math", "x-turnout-max-cost": "0.5"}
    got = extract("chat", CODE_PROMPT, 100, headers=given, reads=needs)
    assert (got.task, got.max_cost) == ("math", 0.5)
    for bad in ({"x-turnout-task": "no way!"}, {"x-turnout-quality-floor": "2"}):
        with pytest.raises(InvalidFeature):
            extract("chat", CODE_PROMPT, 100, headers=bad, reads=needs)


def test_without_the_request_or_the_task_the_body_is_not_scanned() -> None:
    body = {**CODE_PROMPT, "tools": [{"type": "function"}], "max_tokens": 9}
    full = extract("chat", body, 100, reads=frozenset({REQUEST}))
    assert (full.tools, full.max_tokens, full.estimated_input_tokens) == (True, 9, 7)
    bare = extract("chat", body, 100, reads=frozenset({HEALTH, CHANCE}))
    assert (bare.tools, bare.max_tokens, bare.estimated_input_tokens) == (False, None, 0)


def runtime(policy: str) -> Runtime:
    config = load_data(
        {
            "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
            "routes": [{"alias": "r", "policy": policy, "candidates": ["a@p", "b@p"]}],
        },
        env={},
    )
    return Runtime(config)


@pytest.mark.parametrize(
    ("policy", "explain", "task"),
    [
        ("priority", False, "chat"),  # not read: the rules are not run
        ("priority", True, "code"),  # explained: everything is shown
        ("capability", False, "code"),  # read: classified
    ],
)
def test_the_route_pays_for_the_task_only_when_its_policy_reads_it(
    policy: str, explain: bool, task: str
) -> None:
    rt = runtime(policy)
    route = find_route(rt.config, CODE_PROMPT, {})
    routed = route_request(rt.live, rt.store, route, "chat", CODE_PROMPT, 100, {}, explain=explain)
    assert routed.features.task == task
    assert [r.candidate.target_id for r in routed.decision.ranked] == ["a@p", "b@p"]
