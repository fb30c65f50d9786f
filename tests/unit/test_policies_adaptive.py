"""`adaptive` in virtual time: it converges to the best simulated target (lower latency, fewer
errors) within a bounded number of requests, and re-explores when that target degrades."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

from policies.adaptive import Adaptive, AdaptiveParams, Posterior
from policies.compose import Composite, observe
from policies.loading import build_policy
from policies.registry import make_policy
from policies.types import Candidate, Observation, Policy, RequestFeatures

REQ = RequestFeatures("chat", 100)
CANDS = [Candidate(t, "p", t) for t in ("a", "b", "c")]


@dataclass
class Sim:
    """A target's behaviour: error probability and typical latency (seconds, virtual)."""

    error_rate: float
    latency_s: float


def run(policy: Policy, sims: dict[str, Sim], steps: int, rng: random.Random) -> list[str]:
    """`steps` requests; each goes to the policy's first choice and its outcome is observed."""
    chosen = []
    for _ in range(steps):
        first = policy.rank(REQ, CANDS, {})[0].candidate.target_id
        sim = sims[first]
        ok = rng.random() >= sim.error_rate
        latency = sim.latency_s * rng.uniform(0.8, 1.2)
        observe(policy, Observation(first, ok, latency_s=latency if ok else None))
        chosen.append(first)
    return chosen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converges_then_reexplores_when_the_best_degrades(seed: int) -> None:
    policy, issues = build_policy(
        {"name": "adaptive", "params": {"latency_weight": 0.5, "latency_ref_s": 5.0}},
        "policy",
        rng=random.Random(seed),
    )
    assert issues == [] and policy is not None
    sims = {"a": Sim(0.02, 0.5), "b": Sim(0.05, 2.5), "c": Sim(0.40, 2.0)}
    world = random.Random(100 + seed)
    chosen = run(policy, sims, 300, world)
    last = Counter(chosen[-100:])
    assert last["a"] >= 80, last  # converged within 200 requests
    assert sum(1 for t in chosen[:100] if t != "a") >= 5  # it did explore early on

    sims["a"] = Sim(0.90, 0.5)  # the favourite starts failing
    chosen = run(policy, sims, 200, world)
    last = Counter(chosen[-100:])
    assert last["a"] <= 20 and last["b"] >= 60, last


def test_reward_and_feedback() -> None:
    learner = Adaptive(random.Random(0), AdaptiveParams(latency_weight=0.5, latency_ref_s=10.0))
    assert learner.reward(Observation("a", True, latency_s=5.0)) == pytest.approx(0.75)
    assert learner.reward(Observation("a", True, latency_s=60.0)) == pytest.approx(0.5)
    assert learner.reward(Observation("a", False, latency_s=1.0)) == 0.0
    assert learner.reward(Observation("a", None, feedback=0.9)) == pytest.approx(0.9)
    assert learner.reward(Observation("a", True, feedback=0.0)) == pytest.approx(0.5)
    learner.observe(Observation("a", None))  # nothing to learn from: ignored
    assert learner.posterior("a") == Posterior(1.0, 1.0)  # the prior
    for _ in range(200):
        learner.observe(Observation("a", True))
    post = learner.posterior("a")
    assert post.successes + post.failures < 1 / (1 - learner.params.decay) + 2  # capped
    assert post.successes > 40 * post.failures  # and sure of itself


@pytest.mark.parametrize(
    ("params", "issue"),
    [
        ({"decay": 1.5}, ("p.params.decay", "must be <= 1")),
        ({"latency_ref_s": 0}, ("p.params.latency_ref_s", "must be >= 1e-06")),
        ({"feedback_weight": -0.1}, ("p.params.feedback_weight", "must be >= 0")),
    ],
)
def test_params_are_checked(params: dict[str, float], issue: tuple[str, str]) -> None:
    assert build_policy({"name": "adaptive", "params": params}, "p") == (None, [issue])


def test_observe_reaches_the_learning_parts_of_a_composite_only() -> None:
    spec = {"filters": ["health"], "scorers": ["priority", {"name": "adaptive", "weight": 2}]}
    policy, issues = build_policy(spec, "p", rng=random.Random(0))
    assert issues == [] and isinstance(policy, Composite)
    observe(policy, Observation("b", True, latency_s=0.1))
    learner = policy.scorers[1].scorer
    assert isinstance(learner, Adaptive) and learner.posterior("b").successes > 1.0
    observe(make_policy("priority"), Observation("b", True))  # a policy that does not learn
