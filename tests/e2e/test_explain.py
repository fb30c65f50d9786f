"""Explainability through a running gateway: the `x-turnout-route` header (route `debug`
or the request's `x-turnout-debug`), `POST /admin/route` (a dry run: nothing is sent),
`GET /admin/config` (what is loaded, how the last reload went). Real sims and sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gateway.config import load_data, load_file
from gateway.sim.faults import Fault
from gateway.sim.server import SimServer
from tests.builders import CHAT, GatewayFactory, SimFactory, chat, start_gateway

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def config_data(sims: dict[str, SimServer], *, debug: bool = False) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 0, "config_poll_s": 0},
        "health": {"breaker": {"consecutive_failures": 1}},
        "providers": {
            n: {"base_url": s.base_url, "api_key": f"sk-secret-{n}"} for n, s in sims.items()
        },
        "targets": {
            "cheap": {
                "provider": "a",
                "model": "small",
                "context_window": 8192,
                "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.2},
            },
            "strong": {
                "provider": "b",
                "model": "large",
                "context_window": 128000,
                "supports": ["tools"],
                "price": {"input_per_mtok": 5, "output_per_mtok": 15},
            },
        },
        "routes": [
            {
                "alias": "r",
                "candidates": ["cheap", "strong"],
                "debug": debug,
                "policy": {
                    "filters": ["capability", "health"],
                    "scorers": [{"name": "lowest_cost", "weight": 1}],
                },
            },
            {
                "alias": "planner",
                "candidates": ["strong"],
                "match": {"headers": {"x-agent-role": "planner"}},
            },
            {"alias": "planner", "candidates": ["cheap"]},
        ],
    }


def write(path: Path, data: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def attempts(sim: SimServer) -> int:
    return len(sim.state.log)


async def test_debug_header_explains_the_decision_only_when_asked(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory("a"), await sim_factory("b")
    gw = await gateway_factory(load_data(config_data({"a": a, "b": b}), env={}))

    async with http.post(gw.url + CHAT, json=chat(model="r")) as r:
        assert r.status == 200
        assert "x-turnout-route" not in r.headers  # not asked: nothing extra, no cost

    async with http.post(
        gw.url + CHAT, json=chat(model="r", tools=TOOLS), headers={"x-turnout-debug": "route"}
    ) as r:
        assert r.status == 200
        assert r.headers["x-turnout-target"] == "strong"
        line = r.headers["x-turnout-route"]
    assert "policy=" in line and "task=chat" in line
    assert "ranked=strong:" in line
    assert "excluded=cheap(capability: no tool support)" in line


async def test_the_operator_can_refuse_callers_debug_but_keep_route_debug(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory("a"), await sim_factory("b")
    data = config_data({"a": a, "b": b})
    data["server"]["debug_header"] = False
    data["routes"][1]["debug"] = True  # the planner route explains itself anyway
    gw = await gateway_factory(load_data(data, env={}))
    debug = {"x-turnout-debug": "route"}
    async with http.post(gw.url + CHAT, json=chat(model="r"), headers=debug) as r:
        assert r.status == 200 and "x-turnout-route" not in r.headers
    async with http.post(
        gw.url + CHAT, json=chat(model="planner"), headers={"x-agent-role": "planner"}
    ) as r:
        assert r.status == 200 and r.headers["x-turnout-route"].startswith("policy=")


async def test_route_debug_explains_every_answer_streams_and_refusals_too(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory("a"), await sim_factory("b")
    gw = await gateway_factory(load_data(config_data({"a": a, "b": b}, debug=True), env={}))

    async with http.post(gw.url + CHAT, json=chat(model="r", stream=True)) as r:
        assert r.status == 200
        line = r.headers["x-turnout-route"]
        await r.read()
    assert line.startswith("policy=") and "ranked=cheap:" in line and ",strong:" in line

    # A prompt no candidate can take (too long for cheap, and tools that only strong has,
    # with max_tokens past strong's window): 400, and the header says why for each.
    huge = {"max_tokens": 200_000, "tools": TOOLS}
    before = attempts(a) + attempts(b)
    async with http.post(gw.url + CHAT, json=chat(model="r", **huge)) as r:
        assert r.status == 400
        body = await r.json()
        line = r.headers["x-turnout-route"]
    assert body["error"]["code"] == "no_capable_target"
    assert "cheap(capability:" in line and "strong(capability:" in line
    assert attempts(a) + attempts(b) == before


async def test_admin_route_is_a_dry_run_that_explains_scores_and_exclusions(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory("a"), await sim_factory("b")
    gw = await gateway_factory(load_data(config_data({"a": a, "b": b}), env={}))

    async with http.post(gw.url + "/admin/route", json=chat(model="r")) as r:
        assert r.status == 200
        d = await r.json()
    assert d["sent"] is False and d["endpoint"] == CHAT
    assert d["model"] == "r" and d["route"] == "r#0"
    assert [c["target"] for c in d["ranked"]] == ["cheap", "strong"]  # lowest cost first
    assert d["ranked"][0]["score"] > d["ranked"][1]["score"]
    assert "lowest_cost=" in d["ranked"][0]["note"]
    assert d["features"]["task"] == "chat" and d["features"]["tools"] is False
    # each target once more for a 503 (the dry run's failure), as the loop would
    assert d["would_try"] == ["cheap", "cheap", "strong", "strong"]
    assert d["excluded"] == [] and d["error"] is None

    async with http.post(gw.url + "/admin/route", json=chat(model="r", tools=TOOLS)) as r:
        d = await r.json()
    assert [c["target"] for c in d["ranked"]] == ["strong"]
    assert d["excluded"][0]["target"] == "cheap" and d["excluded"][0]["by"] == "capability"
    assert d["excluded"][0]["reason"] == "no tool support"

    # The request's own headers count, as on the real call: route `match` by agent role.
    async with http.post(
        gw.url + "/admin/route", json=chat(model="planner"), headers={"x-agent-role": "planner"}
    ) as r:
        d = await r.json()
    assert d["route"] == "planner#0" and d["would_try"] == ["strong", "strong"]
    async with http.post(gw.url + "/admin/route", json=chat(model="planner")) as r:
        assert (await r.json())["route"] == "planner#1"

    assert attempts(a) == 0 and attempts(b) == 0  # nothing was ever sent

    # An open target: the health filter leaves it out, and says why.
    a.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    async with http.post(gw.url + CHAT, json=chat(model="r")) as r:
        assert r.status == 200 and r.headers["x-turnout-target"] == "strong"
    async with http.post(gw.url + "/admin/route", json=chat(model="r")) as r:
        d = await r.json()
    assert [c["target"] for c in d["ranked"]] == ["strong"]
    assert d["ranked"][0]["available"] is True
    ((excluded),) = d["excluded"]
    assert excluded["target"] == "cheap" and excluded["by"] == "health"
    assert excluded["reason"].startswith("breaker open")
    assert d["would_try"] == ["strong", "strong"]

    # A route without the health filter ranks the open target last, and the dry run does not
    # count it among the targets that would be tried.
    async with http.post(gw.url + "/admin/route", json=chat(model="planner")) as r:
        d = await r.json()
    assert [(c["target"], c["available"]) for c in d["ranked"]] == [("cheap", False)]
    assert d["would_try"] == ["cheap"]  # every candidate out: one panic attempt
    assert attempts(a) == 1 and attempts(b) == 1  # only the real request was sent


async def test_admin_route_reports_bad_input_in_openai_shape(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory("a"), await sim_factory("b")
    gw = await gateway_factory(load_data(config_data({"a": a, "b": b}), env={}))
    cases: list[tuple[Any, str, int, str | None]] = [
        (b"{not json", "", 400, None),
        (chat(model="nope"), "", 404, "model"),
        ({"messages": []}, "", 400, "model"),
        (chat(model="r"), "?endpoint=images", 400, "endpoint"),
    ]
    for body, query, status, param in cases:
        kw: dict[str, Any] = (
            {"data": body, "headers": {"Content-Type": "application/json"}}
            if isinstance(body, bytes)
            else {"json": body}
        )
        async with http.post(gw.url + "/admin/route" + query, **kw) as r:
            assert r.status == status, (body, await r.text())
            err = (await r.json())["error"]
        assert err["message"]
        if param is not None:
            assert err["param"] == param


async def test_admin_config_shows_what_is_loaded_without_secrets_and_reload_problems(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    a, b = await sim_factory("a"), await sim_factory("b")
    data = config_data({"a": a, "b": b})
    data["providers"]["a"] = {  # basic auth in the URL (e.g. a vLLM behind a proxy)
        "base_url": a.base_url.replace("http://", "http://user:pw-secret@")
    }
    data["providers"]["b"]["query"] = {"key": "q-secret"}  # a key as a query parameter
    path = tmp_path / "c.yaml"
    gw = await gateway_factory(load_file(write(path, data)))

    async with http.get(gw.url + "/admin/config") as r:
        assert r.status == 200
        text = await r.text()
    assert "secret" not in text  # keys, URL credentials and query parameters stay out
    view = json.loads(text)
    assert view["status"] == "ok" and view["last_reload"] is None
    assert view["source"] == str(path) and view["reloadable"] is True
    assert [rt["key"] for rt in view["config"]["routes"]] == ["r#0", "planner#0", "planner#1"]
    assert view["config"]["routes"][1]["match"]["headers"] == {"x-agent-role": "planner"}
    assert {t["id"] for t in view["config"]["targets"]} == {"cheap", "strong"}

    # A YAML syntax error: rejected with line and column; the old config keeps serving.
    path.write_text("routes:\n  - alias: r\n    candidates: [cheap\n")
    async with http.post(gw.url + "/admin/reload") as r:
        assert r.status == 422
    async with http.get(gw.url + "/admin/config") as r:
        view = await r.json()
    assert view["status"] == "rejected"
    (problem,) = view["last_reload"]["problems"]
    assert problem["line"] == 4 and problem["column"] >= 1
    assert "YAML syntax error" in problem["message"]
    assert [rt["key"] for rt in view["config"]["routes"]] == ["r#0", "planner#0", "planner#1"]
    async with http.post(gw.url + CHAT, json=chat(model="r")) as r:
        assert r.status == 200

    # A semantic error: every problem with its path.
    bad = config_data({"a": a, "b": b})
    bad["routes"][0]["candidates"] = ["cheap", "ghost"]
    bad["routes"][0]["max_attempts"] = 0
    write(path, bad)
    async with http.post(gw.url + "/admin/reload") as r:
        assert r.status == 422
    async with http.get(gw.url + "/admin/config") as r:
        problems = (await r.json())["last_reload"]["problems"]
    paths = {p["path"] for p in problems}
    assert {"routes[0].candidates[1]", "routes[0].max_attempts"} <= paths

    # Fixed: the report says ok again, and the new config is in use.
    fixed = config_data({"a": a, "b": b})
    fixed["routes"] = fixed["routes"][:1]
    write(path, fixed)
    async with http.post(gw.url + "/admin/reload") as r:
        assert r.status == 200
    async with http.get(gw.url + "/admin/config") as r:
        view = await r.json()
    assert view["status"] == "ok" and view["last_reload"]["result"] == "ok"
    assert [rt["key"] for rt in view["config"]["routes"]] == ["r#0"]


async def test_the_trace_holds_the_decision_with_every_exclusion_and_its_reason(
    sim_factory: SimFactory,
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from gateway.telemetry.hub import Telemetry
    from gateway.telemetry.tracing import TraceSettings

    a, b = await sim_factory("a"), await sim_factory("b")
    exporter = InMemorySpanExporter()
    tel = Telemetry(TraceSettings(), [SimpleSpanProcessor(exporter)])
    config = load_data(config_data({"a": a, "b": b}), env={})
    server = await start_gateway(config, tel)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(server.url + CHAT, json=chat(model="r", tools=TOOLS)) as r,
        ):
            assert r.status == 200
            assert "x-turnout-route" not in r.headers  # traced, but nobody asked for debug
    finally:
        await server.stop()
    (root,) = [sp for sp in exporter.get_finished_spans() if sp.kind is SpanKind.SERVER]
    attrs = dict(root.attributes or {})
    assert list(attrs["turnout.candidates"]) == ["strong"]
    assert list(attrs["turnout.excluded"]) == ["cheap: capability: no tool support"]
    assert attrs["turnout.task"] == "chat"
    (note,) = attrs["turnout.notes"]
    assert "lowest_cost=" in note
    assert str(attrs["turnout.decision"]).startswith("policy=lowest_cost task=chat ranked=strong")
