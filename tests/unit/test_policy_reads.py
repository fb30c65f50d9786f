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


# --- the route: one kept decision for a policy that reads nothing -------------------------------


def ids(routed: object) -> list[str]:
    return [r.candidate.target_id for r in routed.decision.ranked]  # type: ignore[attr-defined]


def test_a_route_whose_policy_reads_nothing_is_decided_once_while_all_are_available() -> None:
    """`priority`'s decision is kept per route (and operation, task, client format) while every
    candidate is available, and is never what the full path would not say: a target that goes
    down, throttles or recovers is seen by the next request."""
    clock = ManualClock(100.0)
    config = load_data(
        {
            "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
            "routes": [{"alias": "r", "candidates": ["a@p", "b@p", "c@p"]}],
        },
        env={},
    )
    rt = Runtime(config, store=store_at(clock))
    route = find_route(rt.config, CODE_PROMPT, {})

    def both() -> tuple[object, list[str]]:
        kept = route_request(rt.live, rt.store, route, "chat", CODE_PROMPT, 100, {}, explain=False)
        full = route_request(rt.live, rt.store, route, "chat", CODE_PROMPT, 100, {}, explain=True)
        assert ids(kept) == ids(full)  # what is kept is what the full path says
        return kept, ids(kept)

    first, order = both()
    assert order == ["a@p", "b@p", "c@p"]
    assert both()[0] is first  # kept, not made again
    settle(rt.store, "a@p", classify_status(503), 10)  # type: ignore[arg-type]  # a opens
    down, order = both()
    assert order == ["b@p", "c@p", "a@p"] and down is not first
    settle(rt.store, "b@p", classify_status(429, retry_after="30"))  # type: ignore[arg-type]
    assert both()[1] == ["c@p", "a@p", "b@p"]  # a recovers sooner than b (30 s)
    clock.advance(120.0)  # a's open time and b's Retry-After are over: a probe may go to a
    settle(rt.store, "a@p", succeeded(200, latency_s=0.1, ttft_s=0.1), 5)  # type: ignore[arg-type]
    back, order = both()
    assert order == ["a@p", "b@p", "c@p"]
    assert both()[0] is back  # all available again: one decision kept again
    meta = {**CODE_PROMPT, "metadata": {"team": "x"}}  # features beyond the task: not kept
    with_meta = route_request(rt.live, rt.store, route, "chat", meta, 100, {}, explain=False)
    assert with_meta is not back and with_meta.features.metadata == {"team": "x"}
    rt.swap(
        load_data(  # a reload: the new config's candidates, at once
            {
                "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
                "routes": [{"alias": "r", "candidates": ["c@p", "a@p"]}],
            },
            env={},
        )
    )
    route = find_route(rt.config, CODE_PROMPT, {})
    assert both()[1] == ["c@p", "a@p"]


def test_a_kept_decision_is_never_given_to_a_request_a_translated_target_cannot_take() -> None:
    """With `translation: strict` whether a target of another wire format may take a request
    depends on the request: a lossless one may go to Claude, a lossy one (`seed`) may not."""
    config = load_data(
        {
            "providers": {
                "o": {"base_url": "http://127.0.0.1:9/v1"},
                "a": {"base_url": "http://127.0.0.1:9/v1", "format": "anthropic"},
            },
            "routes": [
                {"alias": "r", "candidates": ["gpt@o", "claude@a"], "translation": "strict"}
            ],
        },
        env={},
    )
    rt = Runtime(config)
    route = find_route(rt.config, CODE_PROMPT, {})
    for _ in range(2):
        lossless = route_request(
            rt.live, rt.store, route, "chat", CODE_PROMPT, 100, {}, explain=False
        )
        assert ids(lossless) == ["gpt@o", "claude@a"]
    lossy = {**CODE_PROMPT, "seed": 7}
    routed = route_request(rt.live, rt.store, route, "chat", lossy, 100, {}, explain=False)
    assert ids(routed) == ["gpt@o"]
    assert [e.candidate.target_id for e in routed.decision.excluded] == ["claude@a"]


class Ticking(ManualClock):
    """A clock that moves `step_s` on every read once armed: time passes between two reads."""

    step_s = 0.0

    def now(self) -> float:
        self.advance(self.step_s)
        return super().now()


def test_a_decision_is_kept_only_if_the_health_it_was_made_from_was_all_available() -> None:
    """The availability check and the snapshot read the clock apart: a target that stops
    answering between the two (its request passes the hang limit) must not leave its decision
    behind as the one for when all are available."""
    clock = Ticking(100.0)
    config = load_data(
        {
            "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
            "routes": [{"alias": "r", "candidates": ["a@p", "b@p"]}],
        },
        env={},
    )
    rt = Runtime(config, store=store_at(clock))  # hang limit: 1 s at the floor
    route = find_route(rt.config, CODE_PROMPT, {})
    fast = succeeded(200, latency_s=0.2, ttft_s=0.2)
    settle(rt.store, "a@p", fast, 3)  # type: ignore[arg-type]
    waiting = rt.store.acquire("a@p")  # sent at 100 s; nothing back yet
    assert waiting is not None
    clock.advance(0.85)
    clock.step_s = 0.1  # plain() reads 100.95 (waiting 0.95 s), the snapshot 101.05 (hung)
    routed = route_request(rt.live, rt.store, route, "chat", CODE_PROMPT, 100, {}, explain=False)
    clock.step_s = 0.0
    assert ids(routed) == ["b@p", "a@p"]  # the snapshot saw a hung
    rt.store.release(waiting, fast)  # a answers: all available again
    again = route_request(rt.live, rt.store, route, "chat", CODE_PROMPT, 100, {}, explain=False)
    assert ids(again) == ["a@p", "b@p"]
