"""Loading policies and task rules from YAML values: shapes, typed params, errors with paths,
and third-party plugins by `module:Class` and by entry point."""

from __future__ import annotations

import random
from importlib.metadata import EntryPoint
from typing import Any

import pytest
import yaml

from policies import plugins
from policies.compose import Composite
from policies.examples.prefer_provider import PreferProvider
from policies.loading import build_policy, build_task_rules
from policies.registry import BUILTIN, SHORTHANDS, make_policy
from policies.types import Candidate, RequestFeatures

P = "routes[0].policy"
PLUGIN = "policies.examples.prefer_provider:PreferProvider"
REQ = RequestFeatures("chat", 100)
CANDS = [Candidate("a@openai", "openai", "a"), Candidate("b@local", "local", "b")]


def issues(raw: object) -> list[tuple[str, str]]:
    policy, found = build_policy(raw, P)
    assert (policy is None) == bool(found)
    return found


def ranked(raw: object) -> list[str]:
    policy, found = build_policy(raw, P, rng=random.Random(0))
    assert found == [] and policy is not None
    return [r.candidate.target_id for r in policy.rank(REQ, CANDS, {})]


@pytest.mark.parametrize("name", sorted(SHORTHANDS))
def test_every_shorthand_builds_and_ranks(name: str) -> None:
    assert sorted(ranked(name)) == ["a@openai", "b@local"]
    assert sorted(ranked({"name": name, "params": {}})) == ["a@openai", "b@local"]


def test_default_and_compat() -> None:
    assert ranked(None) == ["a@openai", "b@local"]
    assert "priority" in BUILTIN
    assert make_policy("priority").name == "priority"
    with pytest.raises(KeyError, match="unknown policy 'fastest'"):
        make_policy("fastest")


YAML_OK = """
filters: [capability, {name: health, params: {error_weight: 0.5}}]
scorers:
  - {name: lowest_cost, weight: 1.0}
  - {name: least_latency, weight: 0.5, params: {choices: 2, signal: ttft}}
  - priority
tie_break: random
"""


def test_composite_from_yaml() -> None:
    policy, found = build_policy(yaml.safe_load(YAML_OK), P)
    assert found == [] and isinstance(policy, Composite)
    assert [f.name for f in policy.filters] == ["capability", "health"]
    assert [(s.scorer.name, s.weight) for s in policy.scorers] == [
        ("lowest_cost", 1.0),
        ("least_latency", 0.5),
        ("priority", 1.0),
    ]
    assert policy.tie_break == "random"
    assert policy.name == "lowest_cost+least_latency+priority"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "fastest",
            [
                (
                    P,
                    "unknown policy 'fastest' (known: adaptive, capability, cost_quality, health, "
                    "least_busy, least_latency, lowest_cost, priority, round_robin, weighted; "
                    "or module:Class)",
                )
            ],
        ),
        (42, [(P, "expected a policy name, {name, params}, or {filters, scorers, tie_break}")]),
        ({}, [(P, "expected a policy name, {name, params}, or {filters, scorers, tie_break}")]),
        ({"name": 3}, [(f"{P}.name", "required: a policy name or module:Class")]),
        (
            {"name": "priority", "parms": {}},
            [(f"{P}.parms", "unknown key (known keys: name, params)")],
        ),
        (
            {"name": "priority", "params": {"x": 1}},
            [(f"{P}.params.x", "unknown parameter (known: none)")],
        ),
        (
            {
                "name": "cost_quality",
                "params": {"quality_floor": 1.5, "mode": "best", "max_cost": "a"},
            },
            [
                (f"{P}.params.mode", "expected one of 'floor', 'tradeoff', got 'best'"),
                (f"{P}.params.max_cost", "expected a number, got a string"),
            ],
        ),
        (
            {"name": "cost_quality", "params": {"quality_floor": 1.5, "floors": {"code": -1}}},
            [
                (f"{P}.params.quality_floor", "must be <= 1"),
                (f"{P}.params.floors.code", "must be >= 0"),
            ],
        ),
        (
            {"name": "least_latency", "params": {"choices": 0}},
            [(f"{P}.params.choices", "must be >= 1")],
        ),
        (
            {"name": "least_latency", "params": {"choices": True}},
            [(f"{P}.params.choices", "expected an integer, got a boolean")],
        ),
        (
            {"name": "capability", "params": {"require": ["tools", "gpu"]}},
            [
                (
                    f"{P}.params.require[1]",
                    "expected one of 'tools', 'vision', 'json', 'context', got 'gpu'",
                )
            ],
        ),
        ({"name": "health", "params": []}, [(f"{P}.params", "expected a mapping, got a list")]),
        (
            {
                "filters": ["capability", "nope", {"name": "health", "weight": 2}],
                "scorers": [
                    "lowest_cost",
                    {"name": "least_busy", "weight": -1},
                    {"name": "least_latency", "weight": "x"},
                    {"weight": 1},
                ],
                "tie_break": "coin",
                "extra": 1,
            },
            [
                (f"{P}.extra", "unknown key (known keys: filters, scorers, tie_break)"),
                (
                    f"{P}.filters[1]",
                    "unknown filter 'nope' (known: budget, capability, "
                    "cost_quality, health; or module:Class)",
                ),
                (f"{P}.filters[2].weight", "unknown key (known keys: name, params)"),
                (f"{P}.scorers[1].weight", "must be >= 0"),
                (f"{P}.scorers[2].weight", "expected a number, got a string"),
                (f"{P}.scorers[3].name", "required: a policy name or module:Class"),
                (f"{P}.tie_break", "expected one of priority, random"),
            ],
        ),
        ({"filters": "health"}, [(f"{P}.filters", "expected a list, got a string")]),
        (
            {"scorers": [{"name": "priority", "weight": float("inf")}]},
            [(f"{P}.scorers[0].weight", "must be >= 0")],
        ),
        ({"scorers": [["x"]]}, [(f"{P}.scorers[0]", "expected a name or a mapping, got a list")]),
    ],
)
def test_errors_have_paths(raw: object, expected: list[tuple[str, str]]) -> None:
    assert issues(raw) == expected


# --- plugins ----------------------------------------------------------------------------------


def test_module_class_plugin_as_a_policy_and_as_a_scorer() -> None:
    assert ranked({"name": PLUGIN, "params": {"providers": ["local"]}}) == ["b@local", "a@openai"]
    spec = {
        "filters": ["health"],
        "scorers": [
            {"name": PLUGIN, "weight": 2, "params": {"providers": ["openai"]}},
            "lowest_cost",
        ],
    }
    assert ranked(spec) == ["a@openai", "b@local"]
    policy, _ = build_policy(spec, P)
    assert isinstance(policy, Composite) and isinstance(policy.scorers[0].scorer, PreferProvider)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"name": PLUGIN}, [(f"{P}.params.providers", "required")]),
        (PLUGIN, [(f"{P}.params.providers", "required")]),
        (
            {"name": PLUGIN, "params": {"providers": [], "others": 2, "x": 0}},
            [(f"{P}.params.x", "unknown parameter (known: providers, others)")],
        ),
        (
            {"name": PLUGIN, "params": {"providers": [], "others": 2}},
            [
                (f"{P}.params.providers", "must name at least one provider"),
                (f"{P}.params.others", "must be from 0 to 1"),
            ],
        ),
        (
            {"scorers": [{"name": PLUGIN, "params": {"providers": "local"}}]},
            [(f"{P}.scorers[0].params.providers", "expected a list, got a string")],
        ),
        (
            "no_such_module_xyz:Thing",
            [
                (
                    P,
                    "cannot load 'no_such_module_xyz:Thing': ModuleNotFoundError: "
                    "No module named 'no_such_module_xyz'",
                )
            ],
        ),
        (
            {"name": "policies.examples.prefer_provider:Nope"},
            [
                (
                    f"{P}.name",
                    "cannot load 'policies.examples.prefer_provider:Nope': AttributeError: "
                    "module 'policies.examples.prefer_provider' has no attribute 'Nope'",
                )
            ],
        ),
        (
            "policies.types:Price",
            [(P, "'policies.types:Price' is not a policy (needs rank() or score())")],
        ),
        ("policies.types:DEFAULT_TASK", [(P, "'policies.types:DEFAULT_TASK' is not a class")]),
        (
            {"filters": [PLUGIN]},
            [(f"{P}.filters[0].params.providers", "required")],
        ),
        (
            {"filters": [{"name": PLUGIN, "params": {"providers": ["x"]}}]},
            [(f"{P}.filters[0].name", f"'{PLUGIN}' is not a filter (needs reject() and hard)")],
        ),
        (
            {"name": "policies.types:Price", "params": {"a": 1}},
            [(f"{P}.params", "'policies.types:Price' takes no params")],
        ),
    ],
)
def test_plugin_errors(raw: object, expected: list[tuple[str, str]]) -> None:
    assert issues(raw) == expected


def test_entry_point_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [EntryPoint(name="prefer", value=PLUGIN, group=plugins.ENTRY_POINT_GROUP)]

    def fake(**kw: Any) -> list[EntryPoint]:
        assert kw["group"] == "turnout.policies"
        return [e for e in eps if e.name == kw["name"]]

    monkeypatch.setattr(plugins, "entry_points", fake)
    assert ranked({"name": "prefer", "params": {"providers": ["local"]}}) == ["b@local", "a@openai"]
    assert issues("fastest")[0][1].startswith("unknown policy 'fastest'")


def test_the_real_entry_point_lookup_finds_nothing_unknown() -> None:
    assert issues("surely_not_installed_policy")[0][1].startswith("unknown policy")


# --- task rules -------------------------------------------------------------------------------


def test_task_rules_from_yaml() -> None:
    raw = yaml.safe_load(
        r"""
        default: general
        scan_chars: 1000
        rules:
          - {task: legal, keywords: [contract, liability], in: [user]}
          - {task: code, patterns: ['(?m)^\s*SELECT\b']}
        """
    )
    rules, found = build_task_rules(raw, "tasks")
    assert found == [] and rules is not None
    assert rules.classify("Review this contract please", "") == "legal"
    assert rules.classify("hi", "This contract governs you") == "general"  # user only
    assert rules.classify("SELECT * FROM t", "") == "code"
    assert rules.classify("hello", "") == "general"
    default, found = build_task_rules(None, "tasks")
    assert (
        found == []
        and default is not None
        and default.classify("tl;dr this", "") == "summarization"
    )
    none, _ = build_task_rules({"rules": []}, "tasks")
    assert none is not None and none.classify("```code```", "") == "chat"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], [("tasks", "expected a mapping with default, scan_chars and rules")]),
        ({"default": "Not A Name"}, [("tasks.default", "expected a lowercase task name")]),
        ({"scan_chars": 10}, [("tasks.scan_chars", "expected an integer from 64 to 10000000")]),
        ({"rulez": []}, [("tasks.rulez", "unknown key (known: default, rules, scan_chars)")]),
        ({"rules": {}}, [("tasks.rules", "expected a list")]),
        (
            {"rules": [{"keywords": ["x"]}, {"task": "a", "patterns": ["("]}, "x", {"task": "b"}]},
            [
                ("tasks.rules[0].task", "required: a lowercase name such as 'code'"),
                (
                    "tasks.rules[1].patterns[0]",
                    "invalid regex: missing ), unterminated subpattern at position 0",
                ),
                ("tasks.rules[2]", "expected a mapping with task, keywords and/or patterns"),
                ("tasks.rules[3]", "needs keywords or patterns"),
            ],
        ),
        (
            {"rules": [{"task": "a", "keywords": ["", 3], "in": ["body"], "why": 1}]},
            [
                ("tasks.rules[0].why", "unknown key (known: task, keywords, patterns, in)"),
                ("tasks.rules[0].keywords[0]", "expected a non-empty string"),
                ("tasks.rules[0].keywords[1]", "expected a non-empty string"),
                ("tasks.rules[0].in[0]", "expected one of user, system"),
            ],
        ),
    ],
)
def test_task_rule_errors(raw: object, expected: list[tuple[str, str]]) -> None:
    rules, found = build_task_rules(raw, "tasks")
    assert rules is None and found == expected


def test_numbers_written_as_strings_are_accepted() -> None:
    # `${VAR}` expansion yields strings; the rest of the config accepts them too
    spec = {"scorers": [{"name": "least_latency", "weight": "0.5", "params": {"choices": "3"}}]}
    policy, found = build_policy(spec, P)
    assert found == [] and isinstance(policy, Composite)
    assert policy.scorers[0].weight == 0.5
