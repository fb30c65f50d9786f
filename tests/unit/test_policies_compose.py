"""Composition: filters (hard and soft), weighted scorers, tie-breaks, decisions and notes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from health.breaker import BreakerState
from health.signals import TargetHealth
from health.store import HealthSnapshot
from policies.capability import Capability
from policies.compose import Composite, WeightedScorer, decide
from policies.healthy import Health
from policies.types import Candidate, Decision, Excluded, Ranked, RequestFeatures, Score

REQ = RequestFeatures("chat", 10, task="code")


def cand(tid: str, **kw: Any) -> Candidate:
    return Candidate(tid, "p", tid, **kw)


ABC = [cand("a"), cand("b"), cand("c")]


@dataclass(frozen=True)
class Fixed:
    """A scorer with given values per target id (and optionally a failure)."""

    values: dict[str, float]
    name: str = "fixed"
    fail: bool = False

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        if self.fail:
            raise RuntimeError("boom")
        return [Score(self.values.get(c.target_id, 0.0), "n") for c in candidates]


@dataclass(frozen=True)
class Reject:
    """A filter rejecting the given ids."""

    ids: frozenset[str]
    hard: bool
    name: str = "reject"

    def reject(
        self, request: RequestFeatures, candidate: Candidate, health: TargetHealth
    ) -> str | None:
        return "listed" if candidate.target_id in self.ids else None


def composite(*scorers: tuple[dict[str, float], float], **kw: Any) -> Composite:
    ws = tuple(WeightedScorer(Fixed(v, name=f"s{i}"), w) for i, (v, w) in enumerate(scorers))
    return Composite("test", scorers=ws, **kw)


def ids(d: Decision) -> list[str]:
    return [r.candidate.target_id for r in d.ranked]


def test_weighted_mean_of_scores() -> None:
    p = composite(({"a": 1.0, "b": 0.0, "c": 0.5}, 1.0), ({"a": 0.0, "b": 1.0, "c": 0.5}, 3.0))
    d = p.decide(REQ, ABC, {})
    assert ids(d) == ["b", "c", "a"]
    assert [round(r.score, 3) for r in d.ranked] == [0.75, 0.5, 0.25]
    assert d.ranked[0].note == "s0=0.00 (n); s1=1.00 (n)"


@pytest.mark.parametrize(
    ("scorers", "expected"),
    [
        ([({"a": 1.0}, 0.0), ({"c": 1.0}, 1.0)], ["c", "a", "b"]),  # weight 0: no say
        ([({"c": 1.0}, 0.0)], ["a", "b", "c"]),  # all weights 0: tie-break (route order)
        ([], ["a", "b", "c"]),  # no scorers
        ([({"a": 7.0, "b": float("nan"), "c": -1.0}, 1.0)], ["a", "b", "c"]),  # clamped
    ],
)
def test_zero_weights_and_clamping(
    scorers: list[tuple[dict[str, float], float]], expected: list[str]
) -> None:
    d = composite(*scorers).decide(REQ, ABC, {})
    assert ids(d) == expected
    assert all(0.0 <= r.score <= 1.0 for r in d.ranked)


def test_random_tie_break_uses_the_injected_rng() -> None:
    cands = [cand(t) for t in "abcdefgh"]

    def orders(seed: int) -> list[list[str]]:
        p = composite(({}, 1.0), tie_break="random", rng=random.Random(seed))
        return [ids(p.decide(REQ, cands, {})) for _ in range(5)]

    assert orders(1) == orders(1)
    assert len({tuple(o) for o in orders(1)}) > 1
    # scores still come before the tie-break
    p = composite(({"h": 1.0}, 1.0), tie_break="random", rng=random.Random(2))
    assert all(ids(p.decide(REQ, cands, {}))[0] == "h" for _ in range(5))


@pytest.mark.parametrize(
    ("filters", "expected", "excluded"),
    [
        ([Reject(frozenset("b"), hard=True)], ["a", "c"], ["b"]),
        ([Reject(frozenset("abc"), hard=True)], [], ["a", "b", "c"]),  # hard: may empty
        ([Reject(frozenset("abc"), hard=False)], ["a", "b", "c"], []),  # soft: panic
        ([Reject(frozenset("ab"), hard=False)], ["c"], ["a", "b"]),
        # soft after hard: only what the hard one left counts for "all"
        (
            [Reject(frozenset("a"), hard=True), Reject(frozenset("bc"), hard=False)],
            ["b", "c"],
            ["a"],
        ),
    ],
)
def test_filters_hard_and_soft(
    filters: list[Reject], expected: list[str], excluded: list[str]
) -> None:
    d = Composite("f", filters=tuple(filters)).decide(REQ, ABC, {})
    assert ids(d) == expected
    assert [e.candidate.target_id for e in d.excluded] == excluded


def test_benched_targets_go_last_least_bad_first_even_without_a_health_filter() -> None:
    snap: HealthSnapshot = {
        "a": replace(TargetHealth.unknown("a"), state=BreakerState.OPEN, open_for_s=9.0),
        "b": replace(TargetHealth.unknown("b"), throttled_for_s=1.0),
    }
    p = composite(({"a": 1.0, "b": 0.9, "c": 0.1}, 1.0))
    d = p.decide(REQ, ABC, snap)
    assert ids(d) == ["c", "b", "a"]
    assert d.ranked[2].note.startswith("breaker open (9.0s left)")


def test_failing_parts_are_skipped_for_the_request() -> None:
    class Broken:
        name = "broken"
        hard = True

        def reject(
            self, request: RequestFeatures, candidate: Candidate, health: TargetHealth
        ) -> str | None:
            raise ValueError("bug")

    class Short:
        name = "short"

        def score(
            self,
            request: RequestFeatures,
            candidates: Sequence[Candidate],
            health: Sequence[TargetHealth],
        ) -> list[Score]:
            return [Score(1.0)]

    p = Composite(
        "x",
        filters=(Broken(),),
        scorers=(
            WeightedScorer(Fixed({}, fail=True)),
            WeightedScorer(Short()),
            WeightedScorer(Fixed({"b": 1.0})),
        ),
    )
    d = p.decide(REQ, ABC, {})
    assert ids(d) == ["b", "a", "c"]
    assert "broken failed: ValueError" in d.ranked[0].note
    assert "fixed failed: RuntimeError" in d.ranked[0].note
    assert "short failed: ValueError" in d.ranked[0].note


def test_capability_then_health_then_score() -> None:
    cands = [
        cand("t1", supports=frozenset({"tools"}), capabilities={"code": 0.5}),
        cand("t2", supports=frozenset({"tools"}), capabilities={"code": 0.9}),
        cand("plain", capabilities={"code": 1.0}),
    ]
    p = Composite(
        "c",
        filters=(Capability(), Health()),
        scorers=(WeightedScorer(Capability()),),
    )
    snap = {"t2": replace(TargetHealth.unknown("t2"), throttled_for_s=3.0)}
    d = p.decide(replace(REQ, tools=True), cands, snap)
    assert ids(d) == ["t1"]
    assert [(e.candidate.target_id, e.by) for e in d.excluded] == [
        ("plain", "capability"),
        ("t2", "health"),
    ]
    assert ids(p.decide(replace(REQ, tools=True), cands, {})) == ["t2", "t1"]


def test_decision_explain_and_summary() -> None:
    a, b = cand("a"), cand("b")
    d = Decision(
        "cost_quality",
        "code",
        (Ranked(a, 0.91234, "x"),),
        (Excluded(b, "capability", "no tool support\nreally — yes"),),
    )
    line = d.explain()
    assert line == (
        "policy=cost_quality task=code ranked=a:0.912 "
        "excluded=b(capability: no tool support really ? yes)"
    )
    assert line.isascii() and "\n" not in line
    assert Decision("p", "chat", (), ()).summary() == (
        "no candidate can serve this request (no candidates)"
    )


def test_decide_on_a_plain_policy_reports_what_it_left_out() -> None:
    class FirstOnly:
        name = "first_only"

        def rank(
            self, request: RequestFeatures, candidates: Sequence[Candidate], health: HealthSnapshot
        ) -> list[Ranked]:
            return [Ranked(candidates[0], 1.0)]

    d = decide(FirstOnly(), REQ, ABC, {})
    assert ids(d) == ["a"] and d.policy == "first_only" and d.task == "code"
    assert [(e.candidate.target_id, e.by) for e in d.excluded] == [
        ("b", "first_only"),
        ("c", "first_only"),
    ]


def test_notes_only_when_explaining() -> None:
    p = composite(({"a": 0.2, "b": 0.9}, 1.0))
    full = p.decide(REQ, ABC, {})
    quiet = p.decide(REQ, ABC, {}, explain=False)
    assert ids(full) == ids(quiet) == [r.candidate.target_id for r in p.rank(REQ, ABC, {})]
    assert [r.score for r in full.ranked] == [r.score for r in quiet.ranked]
    assert all(r.note for r in full.ranked) and not any(r.note for r in quiet.ranked)
    assert decide(p, REQ, ABC, {}, explain=False) == quiet


def test_the_explanation_is_one_header_safe_line_whatever_a_plugin_says() -> None:
    from policies.types import Candidate, Decision, Excluded, Ranked

    odd = Candidate("t\r1", "p", "m")
    d = Decision(
        "mine",
        "chat",
        (Ranked(Candidate("ok", "p", "m"), 1.0),),
        (Excluded(odd, "plugin\t", "no\r\nway \x00 é"),),
    )
    line = d.explain()
    assert line.isascii() and line.isprintable()
    assert line == "policy=mine task=chat ranked=ok:1.000 excluded=t 1(plugin : no  way   ?)"
