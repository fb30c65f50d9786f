"""Each config setting is declared once (`health.declared`): the loader, the JSON Schema,
the `/admin/config` view, the reload report and docs/configuration.md all agree with the
declaration — checked here against the declarations, never against copied values. Also the
reload itself: a per-key report, policies provisioned once, the retry budget applied live."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, load_data
from gateway.config.clients import ClientLimits
from gateway.config.diff import REDACTED, changes, view
from gateway.config.model import (
    HealthConfig,
    ProviderConfig,
    ResilienceConfig,
    ServerConfig,
    TelemetryConfig,
    Timeouts,
)
from gateway.config.schema import config_schema
from gateway.resilience.budget import BudgetSettings, RetryBudget
from gateway.runtime.reload import reload
from gateway.runtime.state import Runtime
from health.clock import ManualClock
from health.declared import Entry, Part, Setting, flat
from health.settings import BreakerSettings, HangSettings, ThrottleSettings
from tests.builders import REPO_ROOT

SCHEMA = config_schema()
BASE: dict[str, Any] = {
    "providers": {"p": {"base_url": "http://127.0.0.1:1/v1"}},
    "routes": [{"alias": "a", "candidates": ["m1@p", "m2@p"]}],
}

# (schema path, the dataclass whose declared fields are that section's keys)
SECTIONS: list[tuple[tuple[str, ...], type[Any]]] = [
    (("server",), ServerConfig),
    (("health",), HealthConfig),
    (("health", "breaker"), BreakerSettings),
    (("health", "throttle"), ThrottleSettings),
    (("health", "hang"), HangSettings),
    (("resilience",), ResilienceConfig),
    (("telemetry",), TelemetryConfig),
]


def schema_props(path: tuple[str, ...]) -> dict[str, Any]:
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    props: dict[str, Any] = node["properties"]
    return props


def settings_of(cls: type[Any]) -> list[Entry]:
    return [e for e in flat(cls) if isinstance(e.meta, Setting)]


@pytest.mark.parametrize(("path", "cls"), SECTIONS, ids=lambda x: str(x))
def test_schema_default_and_doc_are_the_declarations(path: tuple[str, ...], cls: type[Any]) -> None:
    props = schema_props(path)
    for e in settings_of(cls):
        assert isinstance(e.meta, Setting)
        prop = props[e.key]
        assert prop["description"] == e.meta.doc, e.key
        if e.default is None or e.default == "" or e.meta.secret:
            assert "default" not in prop, e.key
        else:
            assert prop["default"] == e.default, e.key


def test_provider_timeouts_in_the_schema_are_the_declarations() -> None:
    provider = SCHEMA["properties"]["providers"]["additionalProperties"]["properties"]
    route = SCHEMA["properties"]["routes"]["items"]["properties"]
    for e in settings_of(Timeouts):
        assert provider["timeouts"]["properties"][e.key]["default"] == e.default
        assert "default" not in route["timeouts"]["properties"][e.key]  # the provider's wins
    assert provider["max_connections"]["default"] == ProviderConfig("", "").max_connections


@pytest.mark.parametrize(("path", "cls"), SECTIONS, ids=lambda x: str(x))
def test_an_empty_file_section_decodes_to_the_declared_defaults(
    path: tuple[str, ...], cls: type[Any]
) -> None:
    value: Any = load_data(BASE, env={})
    for key in path:
        value = getattr(value, key)
        if key == "health" and len(path) > 1:
            value = value.settings  # breaker and throttle are health settings' parts
    for e in settings_of(cls):
        shown = (REDACTED if e.default else None) if e.meta.secret else e.default
        assert view(value)[e.key] == shown, e.key


def _checked_value(e: Entry) -> Any:
    """A value that breaks `e`'s declared check, or None if it has none."""
    meta = e.meta
    assert isinstance(meta, Setting)
    if meta.choices and not meta.loose:
        return "zz-bogus"
    if meta.positive:
        return 0
    if meta.minimum is not None:
        return meta.minimum - 1
    if meta.maximum is not None:
        return meta.maximum + 1
    return None


@pytest.mark.parametrize(("path", "cls"), SECTIONS, ids=lambda x: str(x))
def test_the_loader_enforces_each_declared_check(path: tuple[str, ...], cls: type[Any]) -> None:
    for e in settings_of(cls):
        bad = _checked_value(e)
        if bad is None:
            continue
        data = copy.deepcopy(BASE)
        node = data
        for key in path:
            node = node.setdefault(key, {})
        node[e.key] = bad
        with pytest.raises(ConfigError) as err:
            load_data(data, env={})
        assert [i.path for i in err.value.issues] == [".".join((*path, e.key))]


# --- docs/configuration.md says what the declarations say ---------------------------------------

_ROW = re.compile(r"^\| `([a-z_.]+)` \| ([^|]*) \| (live|restart) \|")


def documented() -> dict[str, tuple[str, str]]:
    """`section.key` -> (default as written, live|restart), from the reference's tables."""
    out: dict[str, tuple[str, str]] = {}
    section = ""
    text = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("## `"):
            section = line.removeprefix("## `").split("`")[0].split(".")[0]
        elif (m := _ROW.match(line)) and section:
            out[f"{section}.{m[1]}"] = (m[2].strip(), m[3])
    return out


def _written(value: Any) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


@pytest.mark.parametrize(("path", "cls"), SECTIONS, ids=lambda x: str(x))
def test_the_reference_tables_give_each_key_its_default_and_liveness(
    path: tuple[str, ...], cls: type[Any]
) -> None:
    docs = documented()
    for e in settings_of(cls):
        assert isinstance(e.meta, Setting)
        key = ".".join((*path, e.key))
        assert key in docs, f"docs/configuration.md has no row for `{key}`"
        default, applies = docs[key]
        assert applies == ("live" if e.meta.live else "restart"), key
        assert default == _written(e.default), key


def test_client_limits_are_documented_checked_and_in_the_schema_as_declared() -> None:
    docs = documented()
    client = SCHEMA["properties"]["clients"]["additionalProperties"]["properties"]
    props = client["limits"]["properties"]
    assert client["limits"]["additionalProperties"] is False
    for e in settings_of(ClientLimits):
        assert isinstance(e.meta, Setting)
        key = f"clients.limits.{e.key}"
        assert docs.get(key) == (_written(e.default), "live" if e.meta.live else "restart"), key
        assert props[e.key]["description"] == e.meta.doc, key
        data = copy.deepcopy(BASE)
        data["clients"] = {"c": {"key_sha256": "a" * 64, "limits": {e.key: 0}}}
        with pytest.raises(ConfigError) as err:
            load_data(data, env={})
        assert [i.path for i in err.value.issues] == [f"clients.c.limits.{e.key}"]


# --- the reload report, key by key ---------------------------------------------------------------


def _load(data: dict[str, Any]) -> Any:
    return load_data(data, env={})


def test_changes_name_each_key_with_whether_it_applies() -> None:
    old = _load(BASE)
    data = copy.deepcopy(BASE) | {
        "server": {"port": 9999, "admin_token": "t0ken", "max_body_bytes": 1000},
        "health": {"breaker": {"open_s": 3}, "key_prefix": "other"},
        "resilience": {"budget_window_s": 5, "max_attempts": 2},
        "telemetry": {"sample_ratio": 0.5},
    }
    data["providers"]["p"]["timeouts"] = {"connect_s": 1}
    got = {c.path: c.applies for c in changes(old, _load(data))}
    assert got == {
        "server.port": "restart",
        "server.max_body_bytes": "applied",
        "server.admin_token": "applied",
        "health.key_prefix": "restart",
        "health.breaker.open_s": "restart",
        "resilience.max_attempts": "applied",
        "resilience.budget_window_s": "applied",
        "telemetry.sample_ratio": "restart",
        "providers.p.timeouts.connect_s": "applied",
        "routes[0].max_attempts": "applied",  # inherited from resilience.max_attempts
    }
    assert changes(old, _load(copy.deepcopy(BASE))) == ()


def test_editing_only_a_policys_params_is_a_change() -> None:
    """Before: `policy_spec` did not compare, so this reload said `changed: false`."""
    spec = {"name": "least_latency", "params": {"choices": 2}}
    old = _load(copy.deepcopy(BASE) | {"routes": [{**BASE["routes"][0], "policy": spec}]})
    spec3 = {"name": "least_latency", "params": {"choices": 3}}
    new = _load(copy.deepcopy(BASE) | {"routes": [{**BASE["routes"][0], "policy": spec3}]})
    assert [c.as_dict() for c in changes(old, new)] == [
        {"key": "routes[0].policy", "applies": "applied"}
    ]


def test_secrets_are_redacted_in_the_view() -> None:
    config = _load(copy.deepcopy(BASE) | {"server": {"admin_token": "t0ken"}})
    assert view(config.server)["admin_token"] == REDACTED
    assert "t0ken" not in repr(view(config.server))
    health = _load(
        copy.deepcopy(BASE) | {"health": {"store": "redis", "redis_url": "redis://:pw@h"}}
    )
    assert view(health.health)["redis_url"] == REDACTED
    assert view(health.providers["p"])["api_key"] is None  # unset: nothing to hide


# --- a policy is provisioned once, and a bad one is rejected with its path -----------------------


class Exploding:
    """A plugin policy whose constructor fails."""

    def __init__(self) -> None:
        raise RuntimeError("boom")


def test_a_policy_that_cannot_be_built_is_rejected_with_its_path() -> None:
    data = copy.deepcopy(BASE)
    data["routes"][0]["policy"] = f"{__name__}:Exploding"
    with pytest.raises(ConfigError) as err:
        load_data(data, env={})
    (issue,) = err.value.issues
    assert issue.path == "routes[0].policy"
    assert "cannot build" in issue.message and "boom" in issue.message


def test_the_runtime_uses_the_provisioned_policy_fresh_per_runtime() -> None:
    data = copy.deepcopy(BASE)
    data["routes"][0]["policy"] = "round_robin"
    config = load_data(data, env={})
    route = config.routes[0]
    a, b = Runtime(config), Runtime(config)
    assert a.policies[route.key].name == route.policy == "round_robin"
    assert a.policies[route.key] is not b.policies[route.key]  # state (the turn) is not shared


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def test_reload_rejects_an_unbuildable_policy_with_its_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", BASE)
    rt = Runtime(load_data(BASE, env={}, source=str(path)))
    bad = copy.deepcopy(BASE)
    bad["routes"][0]["policy"] = f"{__name__}:Exploding"
    _write(path, bad)
    result = await reload(rt, str(path))
    assert not result.ok and not result.changed
    assert result.problems[0].startswith("routes[0].policy: cannot build")
    assert rt.policies[rt.config.routes[0].key].name == "priority"  # the old one serves


async def test_reload_of_policy_params_reports_the_route_changed(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["routes"][0]["policy"] = {"name": "least_latency", "params": {"choices": 2}}
    path = _write(tmp_path / "c.yaml", data)
    rt = Runtime(load_data(data, env={}, source=str(path)))
    before = rt.policies["a#0"]
    data["routes"][0]["policy"]["params"]["choices"] = 3
    _write(path, data)
    result = await reload(rt, str(path))
    assert result.ok and result.changed
    assert [c.path for c in result.changes] == ["routes[0].policy"]
    assert rt.policies["a#0"] is not before  # a reload builds fresh policies


# --- the retry budget applies a reload's settings, window included -------------------------------


def test_budget_window_change_applies() -> None:
    clock = ManualClock()
    budget = RetryBudget(BudgetSettings(ratio=0.0, min_retries=1, window_s=10.0), clock)
    assert budget.try_spend() and not budget.try_spend()
    clock.advance(3.0)
    assert not budget.try_spend()  # still inside the 10 s window
    budget.settings = BudgetSettings(ratio=0.0, min_retries=1, window_s=2.0)
    assert budget.try_spend()  # a fresh 2 s window
    clock.advance(2.5)
    assert budget.try_spend()  # ... which really is 2 s long
    budget.settings = BudgetSettings(ratio=0.0, min_retries=2, window_s=2.0)
    assert budget.left() == 1  # the same window: what it counted is kept


async def test_reload_applies_the_budget_window(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", BASE)
    rt = Runtime(load_data(BASE, env={}, source=str(path)))
    assert rt.budget.settings.window_s == 10.0
    _write(path, copy.deepcopy(BASE) | {"resilience": {"budget_window_s": 2, "budget_ratio": 0.5}})
    result = await reload(rt, str(path))
    assert {c.path: c.applies for c in result.changes} == {
        "resilience.budget_ratio": "applied",
        "resilience.budget_window_s": "applied",
    }
    assert rt.budget.settings == BudgetSettings(ratio=0.5, min_retries=10, window_s=2.0)
    assert rt.last_reload is not None and rt.last_reload.changes == result.changes


def test_part_metadata_is_all_declared() -> None:
    """Every field of a config section is declared (a plain field would be no key at all)."""
    for _, cls in SECTIONS:
        for e in flat(cls):
            assert isinstance(e.meta, Setting | Part)
