"""The shipped `config.yaml`: it loads, `turnout check` accepts it, it has an example of
every built-in policy part, and its example routes do what their comments say on hand-built
requests, ranked by the real policies built from it (no sockets)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from gateway.config import Config, RouteConfig, load_file
from gateway.runtime.state import Runtime
from health.clock import ManualClock
from health.memory import MemoryStore
from health.outcome import FailureReason, Outcome, OutcomeKind
from health.store import HealthSnapshot
from policies.compose import Composite, decide, observe
from policies.features import extract
from policies.loading import build_policy
from policies.registry import FILTERS, SCORERS, SHORTHANDS
from policies.types import Decision, Observation, Policy
from tests.builders import REPO_ROOT, chat

CONFIG = REPO_ROOT / "config.yaml"
KEYS = {"OPENAI_API_KEY": "sk-test-openai", "TOGETHER_API_KEY": "tg-test-together"}
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
TRACEBACK = 'Traceback (most recent call last):\n  File "app.py", line 3\nKeyError: 1'
LONG_TEXT = "lorem ipsum " * 4000  # 48 000 characters: about 12 000 tokens, over 8192


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_file(CONFIG, env={})


def policy_of(cfg: Config, route: RouteConfig, seed: int = 1) -> Policy:
    index = cfg.routes.index(route)
    built, issues = build_policy(
        route.policy_spec, f"routes[{index}].policy", rng=random.Random(seed)
    )
    assert issues == [] and built is not None
    return built


def route_of(cfg: Config, alias: str, headers: Mapping[str, str] | None = None) -> RouteConfig:
    route = cfg.route(alias, headers or {}, {})
    assert route is not None, alias
    return route


def ask(
    cfg: Config,
    route: RouteConfig,
    payload: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    health: HealthSnapshot | None = None,
    policy: Policy | None = None,
) -> Decision:
    """The decision the gateway would make for this request on this route."""
    features = extract("chat", payload, len(json.dumps(payload)), rules=cfg.tasks, headers=headers)
    candidates = [cfg.targets[t].profile for t in route.candidates]
    return decide(policy or policy_of(cfg, route), features, candidates, health or {})


def ranked(decision: Decision) -> list[str]:
    return [r.candidate.target_id for r in decision.ranked]


def excluded(decision: Decision) -> dict[str, str]:
    return {e.candidate.target_id: f"{e.by}: {e.reason}" for e in decision.excluded}


def with_filter(cfg: Config, name: str) -> list[RouteConfig]:
    """The routes whose policy applies the filter `name`."""
    out = []
    for route in cfg.routes:
        policy = policy_of(cfg, route)
        if isinstance(policy, Composite) and any(f.name == name for f in policy.filters):
            out.append(route)
    return out


# --- it loads --------------------------------------------------------------------------------


def test_first_line_is_the_schema_modeline() -> None:
    first = CONFIG.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./docs/config.schema.json"


def test_matches_the_schema_its_modeline_names() -> None:
    """Editors validate with docs/config.schema.json; the example must not be flagged."""
    schema_path = REPO_ROOT / "docs" / "config.schema.json"
    if not schema_path.exists():
        pytest.skip("docs/config.schema.json is not generated yet")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    assert errors == []


def test_loads_with_keys_and_urls_from_the_environment() -> None:
    env = {**KEYS, "LOCAL_LLM_URL": "http://10.0.0.5:8000/v1/", "TURNOUT_HOST": "0.0.0.0"}
    config = load_file(CONFIG, env=env)
    assert config.providers["openai"].api_key == "sk-test-openai"
    assert config.providers["together"].api_key == "tg-test-together"
    assert config.providers["local"].base_url == "http://10.0.0.5:8000/v1"
    assert config.server.host == "0.0.0.0"
    assert "sk-test-openai" not in repr(config)


def test_loads_with_an_empty_environment(cfg: Config) -> None:
    assert {p.name: p.api_key for p in cfg.providers.values()} == {
        "openai": "",
        "together": "",
        "local": "",
    }
    assert cfg.providers["local"].base_url == "http://127.0.0.1:11434/v1"
    assert cfg.server.host == "127.0.0.1"
    assert cfg.health.store == "memory"


def check_env(**extra: str) -> dict[str, str]:
    drop = ("TURNOUT_", "OPENAI_", "TOGETHER_", "LOCAL_LLM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


@pytest.mark.parametrize("env", [check_env(), check_env(**KEYS)], ids=["no-keys", "keys"])
def test_turnout_check_accepts_it(cfg: Config, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "-c", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result
    assert result.stderr == ""
    *warnings, summary = result.stdout.splitlines()
    assert summary.startswith(f"{CONFIG}: ok — 3 providers")
    assert all(alias in summary for alias in cfg.aliases)
    keyless = ["local"] if "OPENAI_API_KEY" in env else ["openai", "together", "local"]
    assert warnings == [
        f"warning: providers.{p}.api_key is empty (no Authorization is sent)" for p in keyless
    ]
    assert "sk-test-openai" not in result.stdout


def test_existing_aliases_keep_their_candidates(cfg: Config) -> None:
    """Clients rely on these; new examples are added as new routes, never by renaming."""
    expected = {
        "gpt-4o": ("priority", ["gpt-4o@openai", "llama-70b@together", "llama@local"]),
        "fast": ("priority", ["gpt-4o-mini@openai", "llama-70b@together", "llama@local"]),
        "local": ("priority", ["llama@local", "gpt-4o-mini@openai"]),
        "auto": ("cost_quality", ["gpt-4o-mini@openai", "llama-70b@together", "gpt-4o@openai"]),
        "agent": (
            "lowest_cost+least_latency",
            ["llama@local", "llama-70b@together", "gpt-4o@openai"],
        ),
        "text-embedding-3-small": ("priority", ["embed-small@openai"]),
    }
    for alias, (policy, candidates) in expected.items():
        route = route_of(cfg, alias)
        assert (route.policy, list(route.candidates)) == (policy, candidates), alias
    assert cfg.targets["embed-small@openai"].model == "text-embedding-3-small"
    assert route_of(cfg, "fast").hedge is not None


# --- an example of every built-in ------------------------------------------------------------


def parts(spec: object) -> tuple[set[str], set[str]]:
    """(filter names, scorer names) a route's `policy:` uses, shorthands expanded."""
    spec = "priority" if spec is None else spec
    if isinstance(spec, Mapping) and "name" in spec:
        spec = spec["name"]
    if isinstance(spec, str):
        return set(SHORTHANDS.get(spec, ())), {spec}
    assert isinstance(spec, Mapping)

    def names(items: list[Any]) -> set[str]:
        return {i if isinstance(i, str) else i["name"] for i in items}

    return names(spec.get("filters", [])), names(spec.get("scorers", []))


def test_every_builtin_policy_part_has_an_example(cfg: Config) -> None:
    filters: set[str] = set()
    scorers: set[str] = set()
    for route in cfg.routes:
        f, s = parts(route.policy_spec)
        filters |= f
        scorers |= s
    assert set(FILTERS) - filters == set(), "built-in filters without an example in config.yaml"
    missing = (set(SCORERS) | set(SHORTHANDS)) - scorers
    assert missing == set(), "built-in policies without an example in config.yaml"


def test_every_route_gets_the_policy_it_names(cfg: Config) -> None:
    """The runtime falls back to `priority` for a policy it cannot build: none may."""
    policies = Runtime(cfg).policies  # the memory store: nothing started, nothing to close
    assert {r.key: policies[r.key].name for r in cfg.routes} == {
        r.key: r.policy for r in cfg.routes
    }


# --- task rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Hi! What's a good name for a cat?", "chat"),
        ("Solve for x: 3x + 2 = 11", "math"),
        (TRACEBACK, "code"),
        ("import os\nprint(os.getcwd())", "code"),
        ("Extract every company name and date from this email", "extraction"),
        ("Please summarize this meeting transcript in five key points", "summarization"),
        ("Think carefully: what are the pros and cons of sharding now?", "reasoning"),
    ],
)
def test_task_rules(cfg: Config, text: str, task: str) -> None:
    assert cfg.tasks.classify(text, "") == task


# --- example routes on hand-built requests ---------------------------------------------------


def test_a_request_with_tools_never_ranks_a_target_without_tool_support(cfg: Config) -> None:
    routes = with_filter(cfg, "capability")
    assert {r.key for r in routes} >= {"agent#0", "agent#1", "agent#2", "auto#0", "llama#0"}
    for route in routes:
        decision = ask(cfg, route, chat("Find flights to Lisbon", tools=TOOLS))
        assert decision.ranked, route.key
        for r in decision.ranked:
            assert "tools" in r.candidate.supports, (route.key, r.candidate.target_id)
        for tid in route.candidates:
            if "tools" not in cfg.targets[tid].profile.supports:
                assert excluded(decision)[tid] == "capability: no tool support"
    # the catch-all agent route: the free local model is first without tools, out with them
    agent = route_of(cfg, "agent")
    assert ranked(ask(cfg, agent, chat("Hello")))[0] == "llama@local"
    assert ranked(ask(cfg, agent, chat("Hello", tools=TOOLS)))[0] == "llama-70b@together"


def test_a_prompt_longer_than_the_local_context_window_is_never_ranked_on_it(
    cfg: Config,
) -> None:
    assert cfg.targets["llama@local"].profile.context_window == 8192
    routes = [r for r in with_filter(cfg, "capability") if "llama@local" in r.candidates]
    assert {r.key for r in routes} == {"llama#0", "agent#0", "agent#1", "agent#2"}
    for route in routes:
        short = ask(cfg, route, chat("Summarize: the meeting moved to Tuesday."))
        assert "llama@local" in ranked(short), route.key
        long = ask(cfg, route, chat("Summarize this: " + LONG_TEXT))
        assert long.ranked, route.key
        assert "llama@local" not in ranked(long), route.key
        assert excluded(long)["llama@local"].startswith("capability: context window 8192 < ")


@pytest.mark.parametrize(
    ("text", "task", "first"),
    [
        ("Hi! What's a good name for a cat?", "chat", "gpt-4o-mini@openai"),
        ("Please summarize this: the launch moved to May.", "summarization", "gpt-4o-mini@openai"),
        ("Extract the dates from: we met on May 3 and June 9.", "extraction", "gpt-4o-mini@openai"),
        ("Solve for x: 3x + 2 = 11", "math", "gpt-4o@openai"),
        (TRACEBACK, "code", "gpt-4o@openai"),
        ("Think carefully, step by step: which plan is safer?", "reasoning", "gpt-4o@openai"),
    ],
)
def test_cost_quality_picks_the_cheapest_model_good_enough_for_the_task(
    cfg: Config, text: str, task: str, first: str
) -> None:
    decision = ask(cfg, route_of(cfg, "auto"), chat(text))
    assert decision.task == task
    assert ranked(decision)[0] == first
    assert len(decision.ranked) == 3  # the others stay as fallbacks


def test_cost_quality_per_request_floor_and_budget(cfg: Config) -> None:
    auto = route_of(cfg, "auto")
    easy = chat("Hi! What's a good name for a cat?")
    # a higher floor: gpt-4o-mini (chat 0.8) no longer qualifies; Llama 70B (0.85) is cheapest
    for headers, payload in [
        ({"x-turnout-quality-floor": "0.85"}, easy),
        ({}, {**easy, "metadata": {"quality_floor": "0.85"}}),
    ]:
        assert ranked(ask(cfg, auto, payload, headers=headers))[0] == "llama-70b@together"
    # a budget of $0.001 rules out gpt-4o for a code question: the best remaining one leads
    code = chat("Why does this fail?\nTraceback (most recent call last):\nKeyError: 'id'")
    for headers, payload in [
        ({"x-turnout-max-cost": "0.001"}, code),
        ({}, {**code, "metadata": {"max_cost": "0.001"}}),
    ]:
        decision = ask(cfg, auto, payload, headers=headers)
        assert ranked(decision) == ["llama-70b@together", "gpt-4o-mini@openai"]
        assert excluded(decision)["gpt-4o@openai"].startswith("cost_quality: estimated $")


def test_agent_roles_go_to_their_own_routes(cfg: Config) -> None:
    planner = cfg.route("agent", {"x-agent-role": "planner"}, chat("Plan the trip"))
    summarizer = cfg.route(
        "agent", {}, {**chat("Summarize it"), "metadata": {"agent_role": "summarizer"}}
    )
    other = cfg.route("agent", {"x-agent-role": "critic"}, chat("Review it"))
    plain = cfg.route("agent", {}, chat("Hello"))
    assert planner is not None and summarizer is not None and other is not None
    assert (planner.key, planner.policy, planner.debug) == ("agent#0", "capability", True)
    assert (summarizer.key, summarizer.policy) == ("agent#1", "lowest_cost")
    assert not summarizer.debug
    assert other == plain == route_of(cfg, "agent")
    assert plain is not None and plain.key == "agent#2" and not plain.debug
    # the planner gets the strongest model for its task; its decision explains itself
    decision = ask(cfg, planner, chat("Refactor this Python module", tools=TOOLS))
    assert decision.task == "code"
    assert ranked(decision) == ["gpt-4.1@openai", "gpt-4o@openai", "llama-70b@together"]
    assert "excluded=llama@local(capability: no tool support)" in decision.explain()


def test_summarizer_agent_stays_within_its_budget(cfg: Config) -> None:
    summarizer = cfg.route("agent", {}, {"metadata": {"agent_role": "summarizer"}})
    assert summarizer is not None
    assert ranked(ask(cfg, summarizer, chat("Summarize: short note.")))[0] == "llama@local"
    long = ask(cfg, summarizer, chat("Summarize this: " + LONG_TEXT))
    assert ranked(long) == ["gpt-4o-mini@openai"]  # local: too long; Together: over budget
    assert excluded(long)["llama-70b@together"].startswith("budget: estimated $")


def test_weighted_canary_gets_about_a_fifth_of_first_tries(cfg: Config) -> None:
    route = route_of(cfg, "assistant")
    policy = policy_of(cfg, route, seed=7)
    firsts = Counter(ranked(ask(cfg, route, chat("Hi"), policy=policy))[0] for _ in range(2000))
    assert set(firsts) == {"gpt-4o@openai", "gpt-4.1@openai"}
    assert 0.16 < firsts["gpt-4.1@openai"] / 2000 < 0.24


def test_round_robin_alternates(cfg: Config) -> None:
    route = route_of(cfg, "batch")
    policy = policy_of(cfg, route)
    firsts = [ranked(ask(cfg, route, chat("Label: spam?"), policy=policy))[0] for _ in range(4)]
    assert firsts == ["gpt-4o-mini@openai", "llama-70b@together"] * 2


def test_least_busy_overflows_from_the_local_gpu(cfg: Config) -> None:
    route = route_of(cfg, "llama")
    store = MemoryStore(cfg.health.settings)

    def first() -> str:
        return ranked(ask(cfg, route, chat("Hi"), health=store.snapshot(route.candidates)))[0]

    assert first() == "llama@local"
    permits = [store.acquire("llama@local") for _ in range(2)]
    assert first() == "llama-70b@together"
    for p in permits:
        assert p is not None
        store.release(p, Outcome(OutcomeKind.SUCCESS, latency_s=1.0, ttft_s=0.2))
    assert first() == "llama@local"


def test_least_latency_never_leads_with_the_slowest_target(cfg: Config) -> None:
    route = route_of(cfg, "realtime")
    store = MemoryStore(cfg.health.settings, clock=ManualClock())
    ttft = {"gpt-4o-mini@openai": 0.2, "llama-70b@together": 0.6, "gpt-4o@openai": 3.0}
    for tid, seconds in ttft.items():
        for _ in range(5):
            permit = store.acquire(tid)
            assert permit is not None
            store.release(permit, Outcome(OutcomeKind.SUCCESS, latency_s=seconds, ttft_s=seconds))
    policy = policy_of(cfg, route, seed=3)
    health = store.snapshot(route.candidates)
    firsts = Counter(
        ranked(ask(cfg, route, chat("Hi"), health=health, policy=policy))[0] for _ in range(300)
    )
    assert firsts["gpt-4o@openai"] == 0
    assert firsts["gpt-4o-mini@openai"] > 150  # drawn in 2 of 3 pairs, and then it wins


def test_health_route_leaves_out_a_tripped_target(cfg: Config) -> None:
    route = route_of(cfg, "reliable")
    store = MemoryStore(cfg.health.settings, clock=ManualClock())
    assert ranked(ask(cfg, route, chat("Hi"), health=store.snapshot(route.candidates)))[0] == (
        "gpt-4o@openai"
    )
    failure = Outcome(OutcomeKind.PROVIDER_FAILURE, FailureReason.STATUS, status=503)
    for _ in range(cfg.health.settings.breaker.consecutive_failures):
        permit = store.acquire("gpt-4o@openai")
        assert permit is not None
        store.release(permit, failure)
    decision = ask(cfg, route, chat("Hi"), health=store.snapshot(route.candidates))
    assert ranked(decision) == ["llama-70b@together", "gpt-4o-mini@openai"]
    assert excluded(decision)["gpt-4o@openai"].startswith("health: ")


def test_adaptive_learns_from_client_feedback(cfg: Config) -> None:
    route = route_of(cfg, "support")
    policy = policy_of(cfg, route, seed=5)
    assert isinstance(policy, Composite)
    bandit: Any = policy.scorers[0].scorer
    # the reward weights the comment describes: 0.3 for latency, 0.2 for cost, half feedback
    slow_dear = Observation("gpt-4o@openai", True, latency_s=10.0, cost_usd=0.01)
    assert bandit.reward(slow_dear) == pytest.approx(0.5)
    assert bandit.reward(Observation("x", True, latency_s=0.0, feedback=0.0)) == pytest.approx(0.5)
    verdicts = {"gpt-4o-mini@openai": 0.1, "llama-70b@together": 1.0, "gpt-4o@openai": 0.3}
    for _ in range(40):  # what POST /v1/feedback hands the route's policy
        for tid, score in verdicts.items():
            observe(policy, Observation(tid, None, feedback=score))
    firsts = Counter(ranked(ask(cfg, route, chat("Hi"), policy=policy))[0] for _ in range(300))
    assert firsts["llama-70b@together"] > 270
