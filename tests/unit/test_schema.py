"""`turnout schema`: the config file's JSON Schema, for editors, kept true to the loader.

The schema is checked against the real decoders, not against itself: every shipped config is
valid for both, a set of edits is judged the same way by both, and each section's keys are
compared with the "known keys" the loader lists when it meets an unknown one.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

import gateway.demo
from gateway.cli import main
from gateway.config import ConfigError, load_data, load_file
from gateway.config.schema import config_schema
from policies.loading import build_policy
from policies.registry import FILTERS, SCORERS, SHORTHANDS
from tests.builders import REPO_ROOT

COMMITTED = REPO_ROOT / "docs" / "config.schema.json"
SCHEMA = config_schema()
VALIDATOR = Draft202012Validator(SCHEMA)
BOGUS = "zz_bogus"

BASE: dict[str, Any] = {
    "providers": {"p": {"base_url": "http://127.0.0.1:1/v1"}},
    "targets": {"t": {"provider": "p", "model": "m"}},
    "routes": [{"alias": "a", "candidates": ["t", "m2@p"]}],
}


def edited(path: tuple[str | int, ...], value: Any, base: dict[str, Any] = BASE) -> Any:
    """A copy of `base` with `value` at `path` (missing mappings on the way are created)."""
    data = copy.deepcopy(base)
    node: Any = data
    for key in path[:-1]:
        if isinstance(key, str) and node.get(key) is None:
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return data


def schema_errors(data: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(data)
    ]


def dotted(parts: Any) -> str:
    """A schema error's location written as the loader writes paths: `routes[0].policy`."""
    out = ""
    for p in parts:
        out = f"{out}[{p}]" if isinstance(p, int) else f"{out}.{p}" if out else str(p)
    return out


def schema_error_paths(errors: Any) -> set[str]:
    """Where the schema finds problems, down into the branches of anyOf/oneOf, and at the
    offending key itself for unknown and missing keys."""
    out: set[str] = set()
    for e in errors:
        here = list(e.absolute_path)
        out |= schema_error_paths(e.context or [])
        if e.validator == "additionalProperties":
            known = e.schema.get("properties", {})
            out |= {dotted([*here, k]) for k in e.instance if k not in known}
        elif e.validator == "required":
            out |= {dotted([*here, k]) for k in e.validator_value if k not in e.instance}
        else:
            out.add(dotted(here))
    return out


def loader_errors(data: Any) -> list[str]:
    try:
        load_data(data, env={})
    except ConfigError as err:
        return [str(i) for i in err.issues]
    return []


# --- (a) the schema itself --------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    json.dumps(SCHEMA)  # plain JSON: no tuples, mapping proxies or other Python values


# --- (b) every shipped config is valid for both -----------------------------------------------


@pytest.mark.parametrize("name", ["config.yaml", "docker/config.yaml"])
def test_shipped_config_files_are_valid(name: str) -> None:
    path = REPO_ROOT / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert schema_errors(data) == []
    load_file(path, env={})  # the real loader accepts it too (raises ConfigError if not)


def test_demo_embedded_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def spy(data: Any, **kwargs: Any) -> Any:
        seen.append(copy.deepcopy(data))
        return load_data(data, **kwargs)  # the real loader: raises ConfigError if it rejects it

    monkeypatch.setattr("gateway.demo.load_data", spy)
    sims = {n: f"http://127.0.0.1:{9001 + i}/v1" for i, n in enumerate(gateway.demo.SIM_NAMES)}
    gateway.demo.demo_config(sims, 8080)
    assert len(seen) == 1
    assert schema_errors(seen[0]) == []


# --- (c) the schema judges edits as the loader does ---------------------------------------------

COST_QUALITY = {"name": "cost_quality", "params": {"quality_floor": 0.7, "floors": {"code": 0.9}}}
PLUGIN = {
    "name": "policies.examples.prefer_provider:PreferProvider",
    "params": {"providers": ["p"]},
}
COMPOSITE = {
    "filters": ["capability", {"name": "budget", "params": {"max_cost": 0.01}}],
    "scorers": [
        {"name": "lowest_cost", "weight": 1.0},
        {"name": "least_latency", "weight": "${W:-0.5}", "params": {"choices": 3}},
        {
            "name": "policies.examples.prefer_provider:PreferProvider",
            "params": {"providers": ["p"]},
        },
    ],
    "tie_break": "random",
}
RULE = {"task": "legal", "keywords": ["contract"], "in": ["user"]}

ACCEPTED: list[tuple[tuple[str | int, ...], Any]] = [
    (("server",), None),  # an empty section: every key at its default
    (("server", "port"), "${PORT:-8080}"),
    (("server", "port"), 0),
    (("health", "store"), "redis"),  # with a URL, below
    (("health", "breaker", "failure_rate"), 0.25),
    (("telemetry", "traces_exporter"), "otlp"),
    (("telemetry", "otlp_protocol"), "grpc"),
    (("resilience", "deadline_s"), 30),
    (("targets", "t", "supports"), ["tools", "json"]),
    (("targets", "t", "capabilities"), {"code": 0.9, "chat": "${CHAT_Q:-0.5}"}),
    (("routes", 0, "debug"), True),
    (("routes", 0, "hedge"), {"after": "p95", "min_s": 1}),
    (("routes", 0, "hedge"), {"after": 0.5}),
    (("routes", 0, "match"), {"headers": {"x-agent-role": "planner"}, "user": "u"}),
    (("routes", 0, "timeouts"), {"first_token_s": 5}),
    (("routes", 0, "policy"), "least_latency"),
    (("routes", 0, "policy"), {"name": "least_latency", "params": {"signal": "latency"}}),
    (("routes", 0, "policy"), {"name": "cost_quality", "params": {"mode": "${M:-tradeoff}"}}),
    (("routes", 0, "policy"), {"name": "adaptive", "params": None}),
    (("routes", 0, "policy"), COST_QUALITY),
    (("routes", 0, "policy"), PLUGIN),
    (("routes", 0, "policy"), COMPOSITE),
    (("tasks",), {"default": "chat", "scan_chars": 4096, "rules": [RULE]}),
    (("tasks", "rules"), []),
]

REJECTED: list[tuple[tuple[str | int, ...], Any]] = [
    # typos: an unknown key anywhere
    (("colour",), "blue"),
    (("providers", "p", "base_urll"), "http://x/v1"),
    (("routes", 0, "candidate"), ["t"]),
    (("targets", "t", "contex_window"), 8192),
    (("health", "breaker", "open_sec"), 5),
    (("routes", 0, "policy"), {"name": "least_latency", "params": {"choice": 3}}),
    (("routes", 0, "policy"), {"filters": [{"name": "capability", "params": {"requires": []}}]}),
    (("routes", 0, "policy"), {"scorers": [{"name": "health", "params": {"error": 0.5}}]}),
    (("routes", 0, "policy"), {"name": "priority", "params": {"anything": 1}}),  # no params
    (("routes", 0, "policy"), {"scorers": [{"name": "priority", "wieght": 2}]}),
    (("routes", 0, "policy"), {"name": "priority", "filters": []}),
    (("tasks", "rules"), [{"task": "legal", "keyword": ["x"]}]),
    # wrong enum values
    (("health", "store"), "redsi"),
    (("providers", "p", "format"), "cohere"),
    (("telemetry", "log_format"), "xml"),
    (("telemetry", "traces_exporter"), "jaeger"),
    (("targets", "t", "supports"), ["audio"]),
    (("routes", 0, "policy"), {"name": "least_latency", "params": {"signal": "ttfb"}}),
    (("routes", 0, "policy"), {"scorers": ["priority"], "tie_break": "first"}),
    (("routes", 0, "policy"), {"filters": [{"name": "capability", "params": {"require": ["x"]}}]}),
    (("tasks", "rules"), [{"task": "legal", "keywords": ["x"], "in": ["assistant"]}]),
    # wrong types
    (("server", "port"), "eighty"),
    (("resilience", "panic"), "yes"),
    (("routes", 0, "debug"), "true"),
    (("providers", "p", "headers"), {"x-number": 5}),
    (("providers", "p", "timeouts"), {"connect_s": "soon"}),
    (("routes", 0, "candidates"), "t"),
    (("routes", 0, "policy"), ["priority"]),
    (("routes", 0, "policy"), {"name": "cost_quality", "params": {"floors": [0.5]}}),
    (("tasks", "scan_chars"), "${SCAN:-8192}"),  # scan_chars is never read from a string
    # out of range, missing, empty
    (("server", "port"), 70000),
    (("server", "max_body_bytes"), 0),
    (("providers", "p", "timeouts", "connect_s"), -1),
    (("routes", 0, "max_attempts"), 0),
    (("routes", 0, "hedge"), {"after": 0}),
    (("routes", 0, "hedge"), {"min_s": 1}),
    (("routes", 0, "candidates"), []),
    (("routes", 0, "candidates"), ["t", "t"]),
    (("routes", 0, "policy"), {}),
    (("routes", 0, "policy"), {"name": "cost_quality", "params": {"quality_floor": 1.5}}),
    (("routes", 0, "policy"), {"scorers": [{"name": "lowest_cost", "weight": -1}]}),
    (("routes", 0, "policy"), {"name": "adaptive", "params": {"decay": 0.1}}),
    (("telemetry", "sample_ratio"), 2),
    (("tasks", "scan_chars"), 10),
    (("tasks", "default"), "Chat"),
    (("tasks", "rules"), [{"task": "legal"}]),  # needs keywords or patterns
    (("health", "redis_url"), "http://127.0.0.1:6379"),
    (("providers", "p", "base_url"), "localhost:8080"),
    (("targets", "t", "model"), ""),
]


def _id(case: tuple[tuple[str | int, ...], Any]) -> str:
    return ".".join(map(str, case[0])) + "=" + json.dumps(case[1])[:40]


@pytest.mark.parametrize("case", ACCEPTED, ids=_id)
def test_schema_and_loader_accept(case: tuple[tuple[str | int, ...], Any]) -> None:
    data = edited(*case)
    if case[0] == ("health", "store"):
        data["health"]["redis_url"] = "redis://127.0.0.1:6379/0"
    assert loader_errors(data) == []
    assert schema_errors(data) == []


@pytest.mark.parametrize("case", REJECTED, ids=_id)
def test_schema_and_loader_reject(case: tuple[tuple[str | int, ...], Any]) -> None:
    data = edited(*case)
    loader = {issue.partition(": ")[0] for issue in loader_errors(data)}
    assert loader, "the loader accepts it: the case is wrong"
    assert schema_errors(data), "the loader rejects this but the schema accepts it"
    # ... and for the same reason: the schema finds a problem where the loader does (or at
    # the list holding it, e.g. a duplicate candidate)
    found = schema_error_paths(VALIDATOR.iter_errors(data))
    assert any(lp == sp or lp.startswith(sp + "[") for lp in loader for sp in found), (
        loader,
        found,
    )


@pytest.mark.parametrize("missing", ["providers", "routes"])
def test_required_top_level_sections(missing: str) -> None:
    data = {k: v for k, v in BASE.items() if k != missing}
    assert loader_errors(data)
    assert schema_error_paths(VALIDATOR.iter_errors(data)) == {missing}


def test_store_redis_needs_a_url() -> None:
    data = edited(("health", "store"), "redis")
    assert [e.partition(":")[0] for e in loader_errors(data)] == ["health.redis_url"]
    assert schema_error_paths(VALIDATOR.iter_errors(data)) == {"health.redis_url"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("server", "port"), "8080"),  # a quoted number: write it as a number
        (("telemetry", "traces_exporter"), "OTLP"),  # the loader lower-cases it
        (("server", "port"), None),  # an empty value: the loader takes the default
        (("telemetry", "otlp_protocol"), "http/json"),  # the loader reads it as HTTP
    ],
)
def test_schema_is_stricter_on_purpose(path: tuple[str, ...], value: Any) -> None:
    """Documented deviations (gateway/config/schema.py): the editor flags what is almost
    certainly a slip, although the loader tolerates it."""
    data = edited(path, value)
    assert loader_errors(data) == []
    assert schema_errors(data)


# --- (d) drift guard: each section's keys are exactly the loader's ------------------------------

_KNOWN = re.compile(r"unknown (?:key|parameter) \(known(?: keys)?: ([^)]*)\)")


def loader_known_keys(path: tuple[str | int, ...], base: dict[str, Any] = BASE) -> set[str]:
    """The keys the loader knows at `path`, read from its error about a bogus key there."""
    issues = loader_errors(edited((*path, BOGUS), 1, base))
    for issue in issues:
        where, _, message = issue.partition(": ")
        m = _KNOWN.fullmatch(message)
        if where.endswith(BOGUS) and m:
            return set() if m[1] == "none" else set(m[1].split(", "))
    raise AssertionError(f"no unknown-key error for {path}: {issues}")


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def schema_keys_at(path: tuple[str | int, ...]) -> set[str]:
    node = _resolve(SCHEMA)
    for key in path:
        if isinstance(key, int):
            node = _resolve(node["items"])
        elif key in node.get("properties", {}):
            node = _resolve(node["properties"][key])
        else:
            node = _resolve(node["additionalProperties"])
    return set(node["properties"])


def object_branch(name: str) -> set[str]:
    node = SCHEMA["$defs"][name]
    branch = next(b for b in node.get("oneOf", [node]) if b.get("type") == "object")
    return set(branch["properties"])


SECTIONS: list[tuple[str | int, ...]] = [
    (),
    ("server",),
    ("health",),
    ("health", "breaker"),
    ("health", "throttle"),
    ("telemetry",),
    ("resilience",),
    ("providers", "p"),
    ("providers", "p", "timeouts"),
    ("targets", "t"),
    ("targets", "t", "price"),
    ("routes", 0),
    ("routes", 0, "timeouts"),
    ("routes", 0, "match"),
    ("routes", 0, "hedge"),
    ("tasks",),
    ("tasks", "rules", 0),
]
WITH_HEDGE_AND_RULE = edited(("routes", 0, "hedge"), {"after": 1}) | {"tasks": {"rules": [RULE]}}


@pytest.mark.parametrize("path", SECTIONS, ids=lambda p: ".".join(map(str, p)) or "<top>")
def test_section_keys_match_the_loader(path: tuple[str | int, ...]) -> None:
    known = loader_known_keys(path, WITH_HEDGE_AND_RULE)
    assert schema_keys_at(path) == known, (
        f"{path}: the loader knows {sorted(known)}; add the missing keys to gateway/config/schema.py"
    )


POLICY_SHAPES = [
    ({"name": "priority"}, (), "policyNamed"),
    ({"scorers": ["priority"]}, (), "policyComposite"),
    ({"scorers": [{"name": "priority"}]}, ("scorers", 0), "scorer"),
    ({"filters": [{"name": "health"}]}, ("filters", 0), "filter"),
]


@pytest.mark.parametrize(("spec", "inner", "def_name"), POLICY_SHAPES, ids=lambda x: str(x))
def test_policy_shape_keys_match_the_loader(
    spec: dict[str, Any], inner: tuple[str | int, ...], def_name: str
) -> None:
    base = edited(("routes", 0, "policy"), spec)
    assert object_branch(def_name) == loader_known_keys(("routes", 0, "policy", *inner), base)


PARTS = [
    *(("filters", name, entry.params.__name__) for name, entry in FILTERS.items()),
    *(("scorers", name, entry.params.__name__) for name, entry in SCORERS.items()),
    *(("policy", name, SCORERS[name].params.__name__) for name in SHORTHANDS),
]


@pytest.mark.parametrize(("where", "name", "params_def"), PARTS, ids=lambda x: str(x))
def test_builtin_params_keys_match_the_loader(where: str, name: str, params_def: str) -> None:
    spec: dict[str, Any] = {"name": name, "params": {}}
    path: tuple[str | int, ...]
    if where == "policy":
        base, path = edited(("routes", 0, "policy"), spec), ("routes", 0, "policy", "params")
    else:
        base = edited(("routes", 0, "policy"), {where: [spec]})
        path = ("routes", 0, "policy", where, 0, "params")
    assert set(SCHEMA["$defs"][params_def]["properties"]) == loader_known_keys(path, base)
    # and the schema sends this built-in's params to that definition
    bad = edited((*path, BOGUS), 1, base)
    assert any(BOGUS in e for e in schema_errors(bad))


def test_builtin_policy_names_are_offered() -> None:
    named = SCHEMA["$defs"]["policyNamed"]["properties"]["name"]["anyOf"][0]["enum"]
    assert named == list(SHORTHANDS)
    assert SCHEMA["$defs"]["filter"]["oneOf"][0]["anyOf"][0]["enum"] == list(FILTERS)
    assert SCHEMA["$defs"]["scorer"]["oneOf"][0]["anyOf"][0]["enum"] == list(SCORERS)
    for name in SHORTHANDS:  # every offered name is one the loader builds without a plugin
        assert build_policy(name, "p")[1] == []


def test_params_ranges_come_from_the_dataclasses() -> None:
    props = SCHEMA["$defs"]["AdaptiveParams"]["properties"]
    assert props["decay"]["default"] == 0.98
    assert props["decay"]["anyOf"][0] == {"type": "number", "minimum": 0.5, "maximum": 1}
    floors = SCHEMA["$defs"]["CostQualityParams"]["properties"]["floors"]
    assert floors["additionalProperties"]["anyOf"][0] == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
    }
    assert floors["default"]["code"] == 0.8
    choices = SCHEMA["$defs"]["LeastLatencyParams"]["properties"]["choices"]
    assert choices["anyOf"][0] == {"type": "integer", "minimum": 1}


# --- (e) the committed copy, (f) the command ----------------------------------------------------


def test_committed_schema_is_up_to_date() -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(config_schema())), (
        "docs/config.schema.json is stale: regenerate it with "
        "`turnout schema --output docs/config.schema.json`"
    )


def test_cli_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(json.dumps(SCHEMA))
    assert out == COMMITTED.read_text(encoding="utf-8")  # byte for byte what is committed


def test_cli_writes_the_schema_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "schema", "--output", str(target)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result
    Draft202012Validator.check_schema(json.loads(target.read_text(encoding="utf-8")))
    assert str(target) in result.stdout
