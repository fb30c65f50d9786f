"""Each built-in policy on hand-built candidates and health snapshots (no sockets, seeded rng)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from health.breaker import BreakerState
from health.signals import TargetHealth
from policies.compose import decide
from policies.features import extract
from policies.loading import build_policy
from policies.types import Candidate, Policy, Price, RequestFeatures
from tests.builders import chat

CHAT = RequestFeatures("chat", estimated_input_tokens=1000)


def cand(
    tid: str,
    *,
    provider: str = "p",
    price: tuple[float, float] | None = None,
    window: int | None = None,
    weight: float = 1.0,
    caps: Mapping[str, float] | None = None,
    supports: tuple[str, ...] = (),
) -> Candidate:
    return Candidate(
        tid,
        provider,
        tid,
        context_window=window,
        price=None if price is None else Price(*price),
        weight=weight,
        capabilities=dict(caps or {}),
        supports=frozenset(supports),
    )


def hv(tid: str, **kw: Any) -> TargetHealth:
    return replace(TargetHealth.unknown(tid), **kw)


OPEN = {"state": BreakerState.OPEN}


def policy(spec: object, seed: int = 1) -> Policy:
    built, issues = build_policy(spec, "policy", rng=random.Random(seed))
    assert issues == [] and built is not None
    return built


def order(
    spec: object | Policy,
    cands: list[Candidate],
    health: Mapping[str, TargetHealth] | None = None,
    request: RequestFeatures = CHAT,
) -> list[str]:
    p = spec if hasattr(spec, "rank") else policy(spec)
    return [r.candidate.target_id for r in p.rank(request, cands, health or {})]


ABC = [cand("a"), cand("b"), cand("c")]


# --- priority ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cands", "health", "expected"),
    [
        ([cand("a")], {}, ["a"]),
        (ABC, {}, ["a", "b", "c"]),
        (ABC, {"b": hv("b", **OPEN, open_for_s=5.0)}, ["a", "c", "b"]),
        (ABC, {"a": hv("a", throttled_for_s=2.0)}, ["b", "c", "a"]),
        # all out: the one that may recover soonest first, misconfigured last
        (
            ABC,
            {
                "a": hv("a", **OPEN, open_for_s=1.0, misconfigured=True),
                "b": hv("b", **OPEN, open_for_s=9.0),
                "c": hv("c", throttled_for_s=3.0),
            },
            ["c", "b", "a"],
        ),
        # equal waits: the route's order
        (ABC, {t: hv(t, **OPEN, open_for_s=4.0) for t in "abc"}, ["a", "b", "c"]),
        # half-open still takes a probe: not moved
        (ABC, {"a": hv("a", state=BreakerState.HALF_OPEN)}, ["a", "b", "c"]),
        ([], {}, []),
    ],
)
def test_priority(
    cands: list[Candidate], health: Mapping[str, TargetHealth], expected: list[str]
) -> None:
    assert order("priority", cands, health) == expected


# --- weighted ---------------------------------------------------------------------------------


def firsts(p: Policy, cands: list[Candidate], n: int, **kw: Any) -> Counter[str]:
    return Counter(order(p, cands, **kw)[0] for _ in range(n))


def test_weighted_follows_static_weights() -> None:
    p = policy("weighted", seed=7)
    counts = firsts(p, [cand("a", weight=3.0), cand("b", weight=1.0)], 2000)
    assert 0.70 < counts["a"] / 2000 < 0.80


@pytest.mark.parametrize(
    ("weights", "never_first"),
    [
        ((0.0, 1.0, 1.0), {"a"}),  # weight 0: only a fallback
        ((0.0, 0.0, 2.0), {"a", "b"}),
        ((5.0,), set()),
    ],
)
def test_weighted_zero_weights(weights: tuple[float, ...], never_first: set[str]) -> None:
    cands = [cand(t, weight=w) for t, w in zip("abc", weights, strict=False)]
    seen = firsts(policy("weighted"), cands, 300)
    assert not never_first & set(seen)
    assert sum(seen.values()) == 300


def test_weighted_all_zero_falls_back_to_route_order() -> None:
    cands = [cand(t, weight=0.0) for t in "abc"]
    assert order("weighted", cands) == ["a", "b", "c"]


def test_weighted_same_seed_same_order() -> None:
    cands = [cand(t, weight=1.0) for t in "abcdef"]
    assert order(policy("weighted", 3), cands) == order(policy("weighted", 3), cands)


# --- round_robin ------------------------------------------------------------------------------


def test_round_robin_rotates() -> None:
    p = policy("round_robin")
    assert [order(p, ABC) for _ in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_round_robin_puts_open_targets_last_and_one_candidate_is_fine() -> None:
    p = policy("round_robin")
    snap = {"a": hv("a", **OPEN, open_for_s=3.0)}
    assert [order(p, ABC, snap)[0] for _ in range(3)] == ["b", "b", "c"]
    assert [order(p, [cand("z")]) for _ in range(2)] == [["z"], ["z"]]


# --- least_latency ----------------------------------------------------------------------------

EVERY = {"name": "least_latency", "params": {"choices": 10}}  # d >= n: always the best load


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"a": hv("a", ttft_ms_ewma=900.0), "b": hv("b", ttft_ms_ewma=100.0)}, ["b", "a"]),
        # in flight counts: 100 ms x 10 in flight loses to 300 ms idle
        (
            {"a": hv("a", ttft_ms_ewma=300.0), "b": hv("b", ttft_ms_ewma=100.0, in_flight=9)},
            ["a", "b"],
        ),
        # no samples: the median of the others (500) -> between 100 and 900
        (
            {"a": hv("a", ttft_ms_ewma=900.0), "c": hv("c", ttft_ms_ewma=100.0)},
            ["c", "b", "a"],
        ),
        ({}, ["a", "b", "c"]),  # nothing known: ties, route order
        # the fastest is open: last
        (
            {"a": hv("a", ttft_ms_ewma=900.0), "b": hv("b", ttft_ms_ewma=10.0, **OPEN)},
            ["c", "a", "b"],  # c unknown: median(900, 10) = 455
        ),
    ],
)
def test_least_latency_full_choice(health: Mapping[str, TargetHealth], expected: list[str]) -> None:
    cands = ABC if len(expected) == 3 else ABC[:2]
    assert order(EVERY, cands, health) == expected


def test_least_latency_power_of_two_never_picks_the_worst() -> None:
    p = policy("least_latency", seed=5)
    snap = {t: hv(t, ttft_ms_ewma=ms) for t, ms in zip("abc", (100.0, 200.0, 300.0), strict=True)}
    seen = firsts(p, ABC, 300, health=snap)
    assert "c" not in seen  # a draw of two distinct targets always holds a better one
    assert seen["a"] > seen["b"] > 0  # but the best is not the only one: no herding


def test_least_latency_latency_signal_and_all_open() -> None:
    snap = {
        "a": hv("a", ttft_ms_ewma=10.0, latency_ms_ewma=5000.0),
        "b": hv("b", ttft_ms_ewma=90.0, latency_ms_ewma=800.0),
    }
    spec = {"name": "least_latency", "params": {"choices": 2, "signal": "latency"}}
    assert order(spec, ABC[:2], snap) == ["b", "a"]
    all_open = {t: hv(t, **OPEN, open_for_s=1.0 + i) for i, t in enumerate("ab")}
    assert order(spec, ABC[:2], all_open) == ["a", "b"]  # least-bad first for the panic attempt
    assert order(spec, [cand("x")]) == ["x"]


# --- least_busy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_flight", "expected"),
    [
        ((3, 0, 1), ["b", "c", "a"]),
        ((2, 2, 2), ["a", "b", "c"]),  # ties: route order
        ((0, 0, 5), ["a", "b", "c"]),
    ],
)
def test_least_busy(in_flight: tuple[int, ...], expected: list[str]) -> None:
    snap = {t: hv(t, in_flight=n) for t, n in zip("abc", in_flight, strict=True)}
    assert order("least_busy", ABC, snap) == expected


# --- lowest_cost ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prices", "request_", "expected"),
    [
        (((2.5, 10.0), (0.15, 0.6), (1.0, 1.0)), CHAT, ["b", "c", "a"]),
        ((None, (0.15, 0.6), (5.0, 15.0)), CHAT, ["b", "c", "a"]),  # unknown after known
        ((None, None, None), CHAT, ["a", "b", "c"]),  # nothing known: route order
        (((0.0, 0.0), (0.15, 0.6), None), CHAT, ["a", "b", "c"]),  # free first
        (((0.1, 0.1), (0.1, 0.1), (0.1, 0.1)), CHAT, ["a", "b", "c"]),  # ties
        # cheap input, dear output: cheapest for a short answer, not for a long one
        (
            ((0.1, 20.0), (1.0, 1.0), None),
            RequestFeatures("chat", estimated_input_tokens=10_000, max_tokens=16),
            ["a", "b", "c"],
        ),
        (
            ((0.1, 20.0), (1.0, 1.0), None),
            RequestFeatures("chat", estimated_input_tokens=10_000, max_tokens=4000),
            ["b", "a", "c"],
        ),
    ],
)
def test_lowest_cost(
    prices: tuple[tuple[float, float] | None, ...], request_: RequestFeatures, expected: list[str]
) -> None:
    cands = [cand(t, price=p) for t, p in zip("abc", prices, strict=True)]
    assert order("lowest_cost", cands, request=request_) == expected


# --- capability -------------------------------------------------------------------------------

FULL = ("tools", "vision", "json")
CAP_TARGETS = [
    cand("plain", window=8_000, caps={"code": 0.9}),
    cand("tooly", window=8_000, supports=("tools",), caps={"code": 0.5}),
    cand("big", window=200_000, supports=FULL, caps={"code": 0.7}),
    cand("unknown_window", supports=FULL),
]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (RequestFeatures("chat", 100, task="code"), ["plain", "big", "tooly", "unknown_window"]),
        (RequestFeatures("chat", 100, tools=True, task="code"), ["big", "tooly", "unknown_window"]),
        (RequestFeatures("chat", 100, images=True), ["big", "unknown_window"]),
        (RequestFeatures("chat", 100, json_output=True), ["big", "unknown_window"]),
        # 7000 in + 2000 out > 8000: never the small windows; an unknown window is allowed
        (RequestFeatures("chat", 7000, max_tokens=2000), ["big", "unknown_window"]),
        (RequestFeatures("chat", 7000), ["plain", "tooly", "big", "unknown_window"]),
    ],
)
def test_capability_hard_requirements(request_: RequestFeatures, expected: list[str]) -> None:
    assert order("capability", CAP_TARGETS, request=request_) == expected


def test_tools_never_go_to_a_target_without_tool_support() -> None:
    p = policy({"filters": ["capability", "health"], "scorers": ["lowest_cost", "least_busy"]})
    cands = [cand("cheap", price=(0.0, 0.0)), cand("tools", price=(9.0, 9.0), supports=("tools",))]
    req = RequestFeatures("chat", 10, tools=True)
    # even when the tool target is down and the other one is free and idle
    for snap in ({}, {"tools": hv("tools", **OPEN, open_for_s=30.0)}):
        assert order(p, cands, snap, req) == ["tools"]
    d = decide(p, req, cands[:1], {})
    assert d.ranked == () and d.excluded[0].reason == "no tool support"
    assert "cheap: no tool support" in d.summary()


def test_capability_require_subset() -> None:
    spec = {"name": "capability", "params": {"require": ["context"]}}
    req = RequestFeatures("chat", 100, tools=True)
    assert order(spec, CAP_TARGETS, request=req) == [c.target_id for c in CAP_TARGETS]


# --- health -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"a": hv("a", **OPEN, open_for_s=4.0)}, ["b", "c"]),
        ({"b": hv("b", throttled_for_s=1.0), "c": hv("c", **OPEN, misconfigured=True)}, ["a"]),
        # misconfigured, its open time over: probed like any half-open target (as the store
        # admits it), last in line
        (
            {"c": hv("c", state=BreakerState.HALF_OPEN, misconfigured=True)},
            ["a", "b", "c"],
        ),
        # error rate (smoothed: 10 calls at 50 % -> 0.33) costs more than slowness
        (
            {
                "a": hv("a", error_rate=0.5, window_calls=10),
                "b": hv("b", ttft_ms_ewma=800.0),
                "c": hv("c", ttft_ms_ewma=400.0),
            },
            ["c", "b", "a"],
        ),
        # one failure in one call is not a 100 % error rate
        ({"a": hv("a", error_rate=1.0, window_calls=1)}, ["b", "c", "a"]),
        # the fleet's view wins over this gateway's
        (
            {
                "a": hv(
                    "a",
                    error_rate=0.0,
                    window_calls=50,
                    fleet_error_rate=0.9,
                    fleet_window_calls=200,
                )
            },
            ["b", "c", "a"],
        ),
        ({"a": hv("a", state=BreakerState.HALF_OPEN)}, ["b", "c", "a"]),
        # all out: panic keeps them all, least-bad first
        (
            {
                "a": hv("a", **OPEN, open_for_s=9.0),
                "b": hv("b", throttled_for_s=0.5),
                "c": hv("c", **OPEN, open_for_s=2.0),
            },
            ["b", "c", "a"],
        ),
    ],
)
def test_health(health: Mapping[str, TargetHealth], expected: list[str]) -> None:
    assert order("health", ABC, health) == expected


def test_health_panic_is_noted_and_one_open_candidate_is_kept() -> None:
    d = decide(policy("health"), CHAT, [cand("a")], {"a": hv("a", **OPEN, open_for_s=3.0)})
    assert [r.candidate.target_id for r in d.ranked] == ["a"] and d.excluded == ()
    assert "panic" in d.ranked[0].note


# --- cost_quality -----------------------------------------------------------------------------

MODELS = [
    cand(
        "strong",
        price=(2.5, 10.0),
        caps={"chat": 0.9, "summarization": 0.9, "code": 0.92, "math": 0.9, "reasoning": 0.9},
        supports=FULL,
        window=128_000,
    ),
    cand(
        "mini",
        price=(0.15, 0.6),
        caps={"chat": 0.8, "summarization": 0.75, "code": 0.65, "math": 0.55, "reasoning": 0.6},
        supports=FULL,
        window=128_000,
    ),
    cand("local", caps={"chat": 0.6}, window=8_000),
]


def features_of(text: str, **body: Any) -> RequestFeatures:
    """The features of a chat request whose one user turn is `text`."""
    return extract("chat", chat(text, **body), len(text))


@pytest.mark.parametrize(
    ("prompt", "task", "first"),
    [
        ("Hi! What's a good name for a cat?", "chat", "mini"),
        ("Summarize this memo in three bullet points: ...", "summarization", "mini"),
        ("Solve for x: 3x + 2 = 11, and prove that it is unique.", "math", "strong"),
        ("Why does this raise?\n```python\ndef f(x): return x[0]\n```", "code", "strong"),
        ("Think step by step: which plan has fewer risks?", "reasoning", "strong"),
    ],
)
def test_cost_quality_cheap_for_easy_strong_for_hard(prompt: str, task: str, first: str) -> None:
    req = features_of(prompt)
    assert req.task == task
    assert order("cost_quality", MODELS, request=req)[0] == first


def test_cost_quality_honours_max_cost() -> None:
    hard = features_of("Solve for x: 3x + 2 = 11", max_tokens=1000)
    assert order("cost_quality", MODELS, request=hard) == ["strong", "mini", "local"]
    # ~$0.01 on strong, ~$0.0006 on mini: a $0.005 budget leaves mini; unpriced local is out
    capped = replace(hard, max_cost=0.005)
    d = decide(policy("cost_quality"), capped, MODELS, {})
    assert [r.candidate.target_id for r in d.ranked] == ["mini"]
    assert {e.candidate.target_id: e.by for e in d.excluded} == {
        "strong": "cost_quality",
        "local": "cost_quality",
    }
    # the route's default applies unless the request sets its own
    spec = {"name": "cost_quality", "params": {"max_cost": 0.005}}
    assert order(spec, MODELS, request=hard) == ["mini"]
    assert order(spec, MODELS, request=replace(hard, max_cost=1.0))[0] == "strong"
    # nothing within budget: no candidate (the gateway answers 400)
    assert order("cost_quality", MODELS, request=replace(hard, max_cost=1e-6)) == []


def test_cost_quality_floor_override_and_fallback_to_strongest() -> None:
    easy = features_of("hello there")
    assert order("cost_quality", MODELS, request=easy)[0] == "mini"
    assert order("cost_quality", MODELS, request=replace(easy, quality_floor=0.85))[0] == "strong"
    # nobody meets the floor: the strongest first, not the cheapest
    req = replace(easy, quality_floor=0.99)
    assert order("cost_quality", MODELS, request=req) == ["strong", "mini", "local"]
    floors = {"name": "cost_quality", "params": {"floors": {"chat": 0.5}}}
    assert order(floors, MODELS, request=easy)[0] == "mini"


def test_cost_quality_tradeoff() -> None:
    req = features_of("hello there")
    cheap_wins = {"name": "cost_quality", "params": {"mode": "tradeoff", "cost_weight": 1.0}}
    quality_wins = {"name": "cost_quality", "params": {"mode": "tradeoff", "cost_weight": 0.0}}
    assert order(cheap_wins, MODELS[:2], request=req) == ["mini", "strong"]
    assert order(quality_wins, MODELS[:2], request=req) == ["strong", "mini"]


def test_cost_quality_filters_hard_requirements_and_health() -> None:
    req = replace(features_of("hello"), tools=True)
    assert "local" not in order("cost_quality", MODELS, request=req)
    snap = {"mini": hv("mini", **OPEN, open_for_s=5.0)}
    assert order("cost_quality", MODELS, snap, features_of("hello"))[0] == "strong"
