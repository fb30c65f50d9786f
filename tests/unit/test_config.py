"""Config loading: one typed, immutable object, or every problem at once, each with its path."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    Config,
    ConfigError,
    ProviderConfig,
    Timeouts,
    load_data,
    load_file,
    load_text,
)
from policies.types import Candidate, Price

VALID_YAML = """\
server:
  host: 0.0.0.0
  port: 9000
  max_body_bytes: 1048576
health:
  store: memory
  window_s: 20
  breaker:
    consecutive_failures: 3
  throttle:
    max_s: 30
providers:
  openai-east:
    base_url: https://api.openai.example/v1/
    api_key: ${OPENAI_KEY}
    headers:
      OpenAI-Organization: org-123
    timeouts:
      connect_s: 1
      first_token_s: 15.5
    max_connections: 50
  local:
    base_url: http://127.0.0.1:8001/v1
targets:
  gpt-4o@openai-east:
    provider: openai-east
    model: gpt-4o
    context_window: 128000
    price: {input_per_mtok: 2.5, output_per_mtok: 10}
    capabilities: {reasoning: 0.9, code: 1}
    supports: [tools, vision, json]
    weight: 2
  fast:
    provider: local
    model: llama-3-8b
routes:
  - alias: smart
    candidates: [gpt-4o@openai-east, fast]
    max_attempts: 2
  - alias: mini
    policy: priority
    candidates: [gpt-4o-mini@openai-east, llama-3-8b@local]
"""

ENV = {"OPENAI_KEY": "sk-test-123"}


def minimal() -> dict[str, Any]:
    """The smallest valid config, as data; tests break one piece of a fresh copy."""
    return {
        "providers": {"a": {"base_url": "http://127.0.0.1:9/v1"}},
        "routes": [{"alias": "r", "candidates": ["m@a"]}],
    }


def issues_of(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_data(data, env=env or {})
    return [str(i) for i in info.value.issues]


def only_issue(data: object, env: dict[str, str] | None = None) -> str:
    issues = issues_of(data, env)
    assert len(issues) == 1, issues
    return issues[0]


# --- a valid config ------------------------------------------------------------------------


def test_valid_config_yields_typed_object() -> None:
    config = load_text(VALID_YAML, source="valid.yaml", env=ENV)
    assert isinstance(config, Config)
    assert config.source == "valid.yaml"
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9000
    assert config.server.max_body_bytes == 1048576
    assert config.health.store == "memory"
    assert config.health.settings.window_s == 20.0
    assert config.health.settings.breaker.consecutive_failures == 3
    assert config.health.settings.breaker.open_s == 10.0  # default kept
    assert config.health.settings.throttle.max_s == 30.0
    assert config.health.settings.throttle.default_s == 5.0


def test_valid_config_providers() -> None:
    config = load_text(VALID_YAML, env=ENV)
    assert list(config.providers) == ["openai-east", "local"]
    east = config.providers["openai-east"]
    assert east == ProviderConfig(
        name="openai-east",
        base_url="https://api.openai.example/v1",  # trailing slash removed
        api_key="sk-test-123",
        format="openai",
        headers={"OpenAI-Organization": "org-123"},
        timeouts=Timeouts(connect_s=1.0, first_token_s=15.5),
        max_connections=50,
    )
    # unspecified timeouts take the documented defaults
    assert east.timeouts == Timeouts(
        connect_s=1.0, headers_s=10.0, first_token_s=15.5, idle_s=30.0, total_s=600.0
    )
    assert isinstance(east.timeouts.connect_s, float)
    local = config.providers["local"]
    assert local.api_key == ""
    assert local.timeouts == Timeouts()
    assert Timeouts() == Timeouts(
        connect_s=2.0, headers_s=10.0, first_token_s=30.0, idle_s=30.0, total_s=600.0
    )
    assert local.max_connections == 100


def test_valid_config_targets_explicit_and_implicit() -> None:
    config = load_text(VALID_YAML, env=ENV)
    assert set(config.targets) == {
        "gpt-4o@openai-east",
        "fast",
        "gpt-4o-mini@openai-east",
        "llama-3-8b@local",
    }
    t = config.targets["gpt-4o@openai-east"]
    assert (t.id, t.provider, t.model) == ("gpt-4o@openai-east", "openai-east", "gpt-4o")
    assert t.profile == Candidate(
        target_id="gpt-4o@openai-east",
        provider="openai-east",
        model="gpt-4o",
        context_window=128000,
        price=Price(input_per_mtok=2.5, output_per_mtok=10.0),
        weight=2.0,
        capabilities={"reasoning": 0.9, "code": 1.0},
        supports=frozenset({"tools", "vision", "json"}),
    )
    fast = config.targets["fast"]
    assert (fast.provider, fast.model) == ("local", "llama-3-8b")
    assert fast.profile.price is None
    assert fast.profile.context_window is None
    # `model@provider` in a route is a target without a profile of its own
    implicit = config.targets["gpt-4o-mini@openai-east"]
    assert (implicit.id, implicit.provider, implicit.model) == (
        "gpt-4o-mini@openai-east",
        "openai-east",
        "gpt-4o-mini",
    )
    assert implicit.profile == Candidate("gpt-4o-mini@openai-east", "openai-east", "gpt-4o-mini")
    assert config.targets["llama-3-8b@local"].model == "llama-3-8b"


def test_valid_config_routes() -> None:
    config = load_text(VALID_YAML, env=ENV)
    assert config.aliases == ("smart", "mini")
    smart = config.route("smart")
    assert smart is not None
    assert smart.candidates == ("gpt-4o@openai-east", "fast")
    assert smart.policy == "priority"
    assert smart.max_attempts == 2
    mini = config.route("mini")
    assert mini is not None
    assert mini.candidates == ("gpt-4o-mini@openai-east", "llama-3-8b@local")
    assert mini.max_attempts == 3
    assert config.route("nope") is None


def test_minimal_config_defaults() -> None:
    config = load_data(minimal(), env={})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.max_body_bytes == 20 * 1024 * 1024
    assert config.health.store == "memory"
    assert config.source == "<memory>"


def test_price_with_one_side_defaults_the_other_to_zero() -> None:
    data = minimal()
    data["targets"] = {"t": {"provider": "a", "model": "m", "price": {"input_per_mtok": 1}}}
    data["routes"][0]["candidates"] = ["t"]
    price = load_data(data, env={}).targets["t"].profile.price
    assert price == Price(input_per_mtok=1.0, output_per_mtok=0.0)


def test_implicit_target_model_may_contain_at_sign() -> None:
    data = minimal()
    data["routes"][0]["candidates"] = ["org/model@v2@a"]
    t = load_data(data, env={}).targets["org/model@v2@a"]
    assert (t.provider, t.model) == ("a", "org/model@v2")


def test_config_is_immutable() -> None:
    config = load_data(minimal(), env={})
    with pytest.raises(TypeError):
        config.providers["b"] = config.providers["a"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.targets["x"] = config.targets["m@a"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.providers["a"].api_key = "x"  # type: ignore[misc]
    assert isinstance(config.routes, tuple)


def test_load_file_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "turnout.yaml"
    path.write_text(VALID_YAML, encoding="utf-8")
    config = load_file(path, env=ENV)
    assert config.source == str(path)
    assert config.providers["openai-east"].api_key == "sk-test-123"


def test_load_file_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_file(path, env={})
    [issue] = info.value.issues
    assert issue.path == ""
    assert issue.message == "cannot read config file: No such file or directory"
    assert str(info.value).startswith(f"{path}: ")


# --- ${VAR} expansion ----------------------------------------------------------------------


def _key_with(value: str, env: dict[str, str]) -> str:
    data = minimal()
    data["providers"]["a"]["api_key"] = value
    return load_data(data, env=env).providers["a"].api_key


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${K}", {"K": "sk-1"}, "sk-1"),
        ("${K:-fallback}", {}, "fallback"),
        ("${K:-fallback}", {"K": "sk-1"}, "sk-1"),
        ("${K:-fallback}", {"K": ""}, "fallback"),
        ("${K:-}", {}, ""),
        ("${K}", {"K": ""}, ""),  # set but empty, no default: empty
        ("Bearer-${A}-${B:-two}", {"A": "one"}, "Bearer-one-two"),
        ("$${K}", {"K": "sk-1"}, "${K}"),  # `$${` is a literal `${`
        ("$${K:-x} and ${K}", {"K": "v"}, "${K:-x} and v"),
        ("${K}", {"K": "${OTHER}"}, "${OTHER}"),  # values are not expanded again
        ("no refs, $5 and $HOME", {"HOME": "/root"}, "no refs, $5 and $HOME"),
    ],
    ids=[
        "set",
        "default_when_unset",
        "value_over_default",
        "default_when_empty",
        "empty_default",
        "set_but_empty",
        "several",
        "escaped",
        "escaped_and_real",
        "no_reexpansion",
        "plain_dollars",
    ],
)
def test_expansion(value: str, env: dict[str, str], expected: str) -> None:
    assert _key_with(value, env) == expected


def test_expansion_in_url_and_lists() -> None:
    data = minimal()
    data["providers"]["a"]["base_url"] = "http://${HOST}:${PORT:-8001}/v1"
    data["routes"][0]["candidates"] = ["${MODEL}@a"]
    config = load_data(data, env={"HOST": "10.0.0.5", "MODEL": "llama"})
    assert config.providers["a"].base_url == "http://10.0.0.5:8001/v1"
    assert config.route("r") is not None
    assert config.route("r").candidates == ("llama@a",)  # type: ignore[union-attr]


def test_load_text_uses_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNOUT_TEST_KEY", "sk-from-env")
    text = VALID_YAML.replace("${OPENAI_KEY}", "${TURNOUT_TEST_KEY}")
    assert load_text(text).providers["openai-east"].api_key == "sk-from-env"


def test_unset_variables_reported_with_their_paths() -> None:
    data = minimal()
    data["providers"]["a"]["api_key"] = "${OPENAI_KEY}"
    data["providers"]["a"]["headers"] = {"X-Tenant": "${TENANT}"}
    data["routes"][0]["alias"] = "${ALIAS:-r}"
    data["server"] = {"host": "${BIND_HOST}"}
    issues = issues_of(data)
    assert sorted(issues) == [
        "providers.a.api_key: environment variable OPENAI_KEY is not set "
        "(use ${OPENAI_KEY:-default})",
        "providers.a.headers.X-Tenant: environment variable TENANT is not set "
        "(use ${TENANT:-default})",
        "server.host: environment variable BIND_HOST is not set (use ${BIND_HOST:-default})",
    ]


def test_unset_variable_in_a_list_reported_with_its_index() -> None:
    data = minimal()
    data["routes"][0]["candidates"] = ["m@a", "${SECOND_TARGET}"]
    assert (
        "routes[0].candidates[1]: environment variable SECOND_TARGET is not set "
        "(use ${SECOND_TARGET:-default})"
    ) in issues_of(data)


def test_unset_variable_reported_once_per_place() -> None:
    data = minimal()
    data["providers"]["a"]["base_url"] = "${UPSTREAM_URL}"
    data["routes"][0]["candidates"] = ["m@a", "${SECOND_TARGET}"]
    assert issues_of(data) == [
        "providers.a.base_url: environment variable UPSTREAM_URL is not set "
        "(use ${UPSTREAM_URL:-default})",
        "routes[0].candidates[1]: environment variable SECOND_TARGET is not set "
        "(use ${SECOND_TARGET:-default})",
    ]


def test_unset_variable_in_yaml_text() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(VALID_YAML, source="prod.yaml", env={})
    assert [str(i) for i in info.value.issues] == [
        "providers.openai-east.api_key: environment variable OPENAI_KEY is not set "
        "(use ${OPENAI_KEY:-default})"
    ]
    assert str(info.value).startswith("prod.yaml: providers.openai-east.api_key: ")


# --- unknown keys --------------------------------------------------------------------------


def _full() -> dict[str, Any]:
    data = minimal()
    data["server"] = {"port": 0}
    data["health"] = {"breaker": {}, "throttle": {}}
    data["providers"]["a"]["timeouts"] = {"connect_s": 1}
    data["targets"] = {"t": {"provider": "a", "model": "m", "price": {"input_per_mtok": 1}}}
    data["routes"][0]["candidates"] = ["t"]
    return data


@pytest.mark.parametrize(
    ("where", "path", "known"),
    [
        ((), "bogus", "providers"),
        (("server",), "server.bogus", "max_body_bytes"),
        (("health",), "health.bogus", "window_s"),
        (("health", "breaker"), "health.breaker.bogus", "consecutive_failures"),
        (("health", "throttle"), "health.throttle.bogus", "default_s"),
        (("providers", "a"), "providers.a.bogus", "base_url"),
        (("providers", "a", "timeouts"), "providers.a.timeouts.bogus", "first_token_s"),
        (("targets", "t"), "targets.t.bogus", "context_window"),
        (("targets", "t", "price"), "targets.t.price.bogus", "output_per_mtok"),
        (("routes", 0), "routes[0].bogus", "candidates"),
    ],
    ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else None,
)
def test_unknown_key_rejected_with_path(
    where: tuple[str | int, ...], path: str, known: str
) -> None:
    data = _full()
    load_data(copy.deepcopy(data), env={})  # valid before the typo
    node: Any = data
    for key in where:
        node = node[key]
    node["bogus"] = 1
    issue = only_issue(data)
    assert issue.startswith(f"{path}: unknown key (known keys: ")
    assert known in issue


def test_typo_of_a_real_key_is_rejected() -> None:
    data = minimal()
    data["providers"]["a"]["timeouts"] = {"conect_s": 1}
    assert only_issue(data) == (
        "providers.a.timeouts.conect_s: unknown key "
        "(known keys: adaptive, connect_s, first_token_s, headers_s, idle_s, total_s)"
    )


# --- every error at once -------------------------------------------------------------------


def test_broken_config_reports_all_errors_with_paths() -> None:
    text = """\
server:
  port: 99999
providers:
  a:
    base_url: http://127.0.0.1:9/v1
    timeouts: {connect_s: fast}
  b:
    base_url: localhost:8080
targets:
  t1: {provider: nowhere, model: m}
routes:
  - alias: one
    candidates: [t1]
  - alias: two
    candidates: [m@a, t1, x]
    policy: fastest
  - alias: one
    candidates: []
    max_attempts: true
"""
    with pytest.raises(ConfigError) as info:
        load_text(text, source="broken.yaml", env={})
    issues = [str(i) for i in info.value.issues]
    expected = [
        "server.port: must be between 0 and 65535, got 99999",
        "providers.a.timeouts.connect_s: expected a number, got a string",
        "providers.b.base_url: must be an http(s) URL, got 'localhost:8080'",
        "targets.t1.provider: unknown provider 'nowhere'",
        "routes[1].candidates[2]: unknown target 'x'",
        "routes[2].alias: duplicate alias 'one': an earlier route for it has no `match`, "
        "so this one could never be chosen",
        "routes[2].candidates: required: a non-empty list of target ids",
        "routes[2].max_attempts: expected an integer, got a boolean",
    ]
    policy = [i for i in issues if i.startswith("routes[1].policy: ")]
    assert len(policy) == 1 and policy[0].startswith(
        "routes[1].policy: unknown policy 'fastest' (known: "
    )
    assert "priority" in policy[0]
    assert sorted(i for i in issues if i not in policy) == sorted(expected)
    assert len(issues) == len(expected) + 1
    # the exception's text names the file and carries every issue
    message = str(info.value)
    assert message.startswith("broken.yaml: ")
    for issue in issues:
        assert issue in message


def test_missing_routes_reported_alongside_other_errors() -> None:
    data = minimal()
    del data["routes"]
    data["server"] = {"port": "eighty"}
    assert issues_of(data) == [
        "server.port: expected an integer, got a string",
        "routes: at least one route is required",
    ]


def test_empty_config_requires_providers() -> None:
    with pytest.raises(ConfigError) as info:
        load_text("", env={})
    assert "providers: at least one provider is required" in [str(i) for i in info.value.issues]


def test_missing_routes_alone() -> None:
    data = minimal()
    del data["routes"]
    assert only_issue(data) == "routes: at least one route is required"


# --- YAML syntax ---------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = "server:\n  host: 127.0.0.1\n port: 8080\n"
    with pytest.raises(ConfigError) as info:
        load_text(text, source="bad.yaml", env={})
    [issue] = info.value.issues
    assert issue.path == ""
    assert issue.message.startswith("YAML syntax error: line 3, column 2: ")
    assert str(info.value).startswith("bad.yaml: YAML syntax error: line 3, column 2: ")


def test_yaml_tab_error_has_line_and_column() -> None:
    text = "providers:\n  a:\n    base_url: http://x\n\troutes: []\n"
    with pytest.raises(ConfigError) as info:
        load_text(text, env={})
    [issue] = info.value.issues
    assert issue.message.startswith("YAML syntax error: line 4, column 1: ")
    assert "'\\t'" in issue.message


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "expected a mapping, got list"), ("hello\n", "expected a mapping, got str")],
)
def test_top_level_must_be_a_mapping(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, env={})
    assert [str(i) for i in info.value.issues] == [message]


def test_duplicate_yaml_key_is_reported() -> None:
    text = """\
providers:
  a: {base_url: "http://127.0.0.1:1/v1", api_key: first}
  a: {base_url: "http://127.0.0.1:2/v1", api_key: second}
routes: [{alias: r, candidates: [m@a]}]
"""
    with pytest.raises(ConfigError) as info:
        load_text(text, env={})
    # Reported where YAML sees it: by line and column (the path is not known while parsing).
    assert [str(i) for i in info.value.issues] == [
        "YAML syntax error: line 3, column 3: duplicate key 'a'"
    ]


# --- type errors ---------------------------------------------------------------------------


def _set(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    data = _full()
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "issue"),
    [
        (
            ("providers", "a", "timeouts", "connect_s"),
            "2s",
            "providers.a.timeouts.connect_s: expected a number, got a string",
        ),
        (
            ("providers", "a", "timeouts", "connect_s"),
            True,
            "providers.a.timeouts.connect_s: expected a number, got a boolean",
        ),
        (("server", "port"), "eighty", "server.port: expected an integer, got a string"),
        (("server", "port"), False, "server.port: expected an integer, got a boolean"),
        (("server", "port"), 80.5, "server.port: expected an integer, got float"),
        (("server", "host"), True, "server.host: expected a string, got a boolean"),
        (
            ("routes", 0, "max_attempts"),
            True,
            "routes[0].max_attempts: expected an integer, got a boolean",
        ),
        (
            ("targets", "t", "price", "input_per_mtok"),
            "cheap",
            "targets.t.price.input_per_mtok: expected a number, got a string",
        ),
        (
            ("providers", "a", "max_connections"),
            0,
            "providers.a.max_connections: must be greater than 0, got 0",
        ),
        (
            ("providers", "a", "timeouts", "connect_s"),
            -1,
            "providers.a.timeouts.connect_s: must be greater than 0, got -1.0",
        ),
        (("routes", 0, "max_attempts"), 0, "routes[0].max_attempts: must be greater than 0, got 0"),
        (("server", "port"), -1, "server.port: must be between 0 and 65535, got -1"),
        (
            ("targets", "t", "context_window"),
            0,
            "targets.t.context_window: must be greater than 0, got 0",
        ),
        (
            ("targets", "t", "supports"),
            ["tools", "telepathy"],
            "targets.t.supports[1]: unknown feature 'telepathy' "
            "(known: tools, vision, json, embeddings, prefill)",
        ),
        (("routes",), {"alias": "r"}, "routes: expected a list, got dict"),
        (("health", "store"), "etcd", "health.store: unknown store 'etcd' (known: memory, redis)"),
        (("health", "store"), "redis", "health.redis_url: required when store is 'redis'"),
        (("health", "bucket_s"), 60, "health.bucket_s: must not exceed window_s"),
        (
            ("providers", "a", "format"),
            "cohere",
            "providers.a.format: unknown format 'cohere' (known: openai, anthropic, gemini)",
        ),
    ],
    ids=lambda v: None,
)
def test_type_and_value_errors(path: tuple[str | int, ...], value: object, issue: str) -> None:
    assert only_issue(_set(path, value)) == issue


def test_provider_must_be_a_mapping() -> None:
    data = minimal()
    data["providers"]["b"] = "http://x"
    assert issues_of(data) == ["providers.b: expected a mapping, got str"]


def test_integer_accepted_where_a_number_is_expected() -> None:
    config = load_data(_set(("providers", "a", "timeouts", "connect_s"), 3), env={})
    assert config.providers["a"].timeouts.connect_s == 3.0
    assert isinstance(config.providers["a"].timeouts.connect_s, float)


# --- routes and targets --------------------------------------------------------------------


def test_duplicate_alias() -> None:
    data = minimal()
    data["routes"].append({"alias": "r", "candidates": ["m@a"]})
    assert only_issue(data) == (
        "routes[1].alias: duplicate alias 'r': an earlier route for it has no `match`, "
        "so this one could never be chosen"
    )


@pytest.mark.parametrize("candidates", [[], None, "m@a"], ids=["empty", "missing", "string"])
def test_candidates_must_be_a_non_empty_list(candidates: object) -> None:
    data = minimal()
    if candidates is None:
        del data["routes"][0]["candidates"]
    else:
        data["routes"][0]["candidates"] = candidates
    assert only_issue(data) == "routes[0].candidates: required: a non-empty list of target ids"


def test_candidate_errors() -> None:
    data = minimal()
    data["routes"][0]["candidates"] = ["m@a", 7, "m@a", "m@nowhere", "@a", "plain"]
    assert issues_of(data) == [
        "routes[0].candidates[1]: expected a target id, got 7",
        "routes[0].candidates[2]: target 'm@a' listed twice",
        "routes[0].candidates[3]: unknown target 'm@nowhere'",
        "routes[0].candidates[4]: unknown target '@a'",
        "routes[0].candidates[5]: unknown target 'plain'",
    ]


def test_route_alias_required_and_route_must_be_mapping() -> None:
    data = minimal()
    data["routes"].append({"candidates": ["m@a"]})
    data["routes"].append("r2")
    assert issues_of(data) == [
        "routes[1].alias: required",
        "routes[2]: expected a mapping, got str",
    ]


def test_unknown_policy() -> None:
    data = minimal()
    data["routes"][0]["policy"] = "fastest"
    issue = only_issue(data)
    assert issue.startswith("routes[0].policy: unknown policy 'fastest' (known: ")
    assert "priority" in issue


def test_target_requires_provider_and_model() -> None:
    data = minimal()
    data["targets"] = {"t": {}}
    data["routes"][0]["candidates"] = ["t"]
    assert issues_of(data) == ["targets.t.provider: required", "targets.t.model: required"]


@pytest.mark.parametrize(
    ("url", "issue"),
    [
        ("ftp://example.com/v1", "must be an http(s) URL, got 'ftp://example.com/v1'"),
        ("localhost:8080", "must be an http(s) URL, got 'localhost:8080'"),
        ("http://", "must be an http(s) URL, got 'http://'"),
        ("api.openai.com/v1", "must be an http(s) URL, got 'api.openai.com/v1'"),
        (
            "https://x.openai.azure.com/openai/deployments/d?api-version=1",
            "must not carry a query or fragment (the endpoint path is appended to it): put "
            "query parameters in `query:`",
        ),
        ("", "required"),
        (None, "required"),
    ],
)
def test_bad_base_url(url: str | None, issue: str) -> None:
    data = minimal()
    if url is None:
        del data["providers"]["a"]["base_url"]
    else:
        data["providers"]["a"]["base_url"] = url
    assert only_issue(data) == f"providers.a.base_url: {issue}"


# --- secrets -------------------------------------------------------------------------------


def test_provider_repr_never_shows_api_key() -> None:
    data = minimal()
    data["providers"]["a"]["api_key"] = "sk-very-secret-value"
    data["providers"]["a"]["headers"] = {"X-Api-Key": "hdr-very-secret-value"}
    data["providers"]["a"]["query"] = {"key": "query-very-secret-value"}
    data["health"] = {"store": "redis", "redis_url": "redis://:pw-very-secret@redis:6379/0"}
    config = load_data(data, env={})
    provider = config.providers["a"]
    assert provider.api_key == "sk-very-secret-value"
    for text in (repr(provider), str(provider), repr(config), str(config), repr(config.health)):
        assert "very-secret" not in text, text
    assert "name='a'" in repr(provider)


def test_api_key_type_error_does_not_echo_the_key() -> None:
    data = minimal()
    data["providers"]["a"]["api_key"] = 9876543210123
    issue = only_issue(data)
    assert issue.startswith("providers.a.api_key: expected a string")
    assert "9876543210123" not in issue
