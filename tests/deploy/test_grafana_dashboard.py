"""ops/grafana/turnout.json: an importable dashboard whose queries use the real metric names.

Two views:

- Structure, offline: the import format (`__inputs` with DS_PROMETHEUS, schemaVersion), unique
  panel ids, every panel with the datasource and at least one query, a grid without overlaps,
  the panels the dashboard promises (quantiles over `_bucket` series, breaker state mapped to
  closed/half-open/open).
- Names, live: a real gateway in front of real sims serves a few requests (successes, a
  failover, a request refused by the retry budget), then every metric name and every label
  name that a query uses must appear in its `/metrics` text, and every family there must be
  on the dashboard.

PromQL is read with a small tokenizer (strings, ranges, label matchers and grouping clauses
taken out first), enough for the expressions this dashboard uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.sim import Fault
from tests.builders import CHAT, REPO_ROOT, GatewayFactory, SimFactory, chat, make_config

DASHBOARD = REPO_ROOT / "ops" / "grafana" / "turnout.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Labels that Prometheus adds when it scrapes (absent from the gateway's own text).
SCRAPE_LABELS = {"job", "instance"}
# Families that may be missing from the dashboard (none today).
NOT_ON_DASHBOARD: set[str] = set()

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
RANGE = re.compile(r"\[[^\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHER_NAME = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
SELECTOR = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?")
BARE_MATCHERS = re.compile(r"(?<![\w:])\s*\{")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*([A-Za-z_]\w*)\)$")


# --- reading the dashboard and its PromQL ----------------------------------------------------


def load() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard) if p["type"] != "row"]


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in data_panels(dashboard) for t in p["targets"]]


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, `label_values(...)`) for every query variable."""
    out = []
    for var in dashboard["templating"]["list"]:
        query = var["query"]
        out.append((var["name"], query["query"] if isinstance(query, dict) else query))
    return out


def parse(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The selectors of a PromQL expression, as (metric name, label names matched), and the
    label names of its grouping clauses (by/without/on/ignoring/group_*)."""
    s = STRING.sub('""', expr)  # also drops Grafana's $variables, which live in strings...
    s = RANGE.sub("", s)  # ...or in ranges ([$__rate_interval])
    grouping = {label.strip() for m in GROUPING.finditer(s) for label in m[1].split(",")}
    grouping.discard("")
    s = GROUPING.sub(" ", s)
    selectors = []
    for m in SELECTOR.finditer(s):
        name, matchers = m[1], m[2]
        if name in KEYWORDS or s[m.end() :].lstrip().startswith("("):
            continue  # an operator keyword or a function call
        selectors.append((name, set(MATCHER_NAME.findall(matchers or ""))))
    assert not BARE_MATCHERS.search(SELECTOR.sub("", s)), f"selector without a name: {expr}"
    return selectors, grouping


def test_the_promql_reader_finds_metrics_and_labels() -> None:
    selectors, grouping = parse(
        'histogram_quantile(0.95, sum by (target, le) (rate(x_bucket{job=~"$job", a="b}"}'
        "[$__rate_interval]))) / ignoring(le) (sum(y_total offset 5m) or vector(0)) "
        "> bool 1e3 and on (instance) z"
    )
    assert selectors == [("x_bucket", {"job", "a"}), ("y_total", set()), ("z", set())]
    assert grouping == {"target", "le", "instance"}


# --- structure -------------------------------------------------------------------------------


def test_dashboard_is_importable_with_a_prometheus_input() -> None:
    d = load()
    assert isinstance(d["schemaVersion"], int) and 36 <= d["schemaVersion"] <= 41
    assert d["title"] and d["uid"] and d["id"] is None
    (ds_input,) = [i for i in d["__inputs"] if i["name"] == "DS_PROMETHEUS"]
    assert (ds_input["type"], ds_input["pluginId"]) == ("datasource", "prometheus")
    required = {(r["type"], r["id"]) for r in d["__requires"]}
    assert ("datasource", "prometheus") in required
    assert {("panel", p["type"]) for p in data_panels(d)} <= required
    for var in d["templating"]["list"]:
        assert var["type"] == "query" and var["datasource"] == DATASOURCE, var["name"]


def test_panels_have_unique_ids_a_datasource_and_queries() -> None:
    d = load()
    ids = [p["id"] for p in all_panels(d)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), sorted(ids)
    for p in data_panels(d):
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t.get("datasource", DATASOURCE) == DATASOURCE, p["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in all_panels(load()):
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_the_promised_panels_are_there() -> None:
    d = load()
    names = {name for _, e in exprs(d) for name, _ in parse(e)[0]}
    assert names >= {
        "turnout_requests_total",
        "turnout_attempts_total",
        "turnout_failovers_total",
        "turnout_request_duration_seconds_bucket",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_client_token_usage_total",
        "turnout_retry_budget_exhausted_total",
        "turnout_breaker_state",
        "turnout_target_throttled",
        "turnout_target_in_flight",
        "turnout_redis_degraded",
    }
    # Histograms are read as quantiles over their buckets, never as a bare bucket series.
    for title, e in exprs(d):
        if "_bucket" in e:
            assert e.startswith("histogram_quantile(") and "le" in parse(e)[1], title
    for hist in (
        "turnout_request_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
    ):
        quantiles = {
            e.split(",")[0].removeprefix("histogram_quantile(")
            for _, e in exprs(d)
            if f"{hist}_bucket" in e
        }
        assert quantiles >= {"0.5", "0.95", "0.99"}, hist
    # Breaker state: the numbers mapped to their names (0 closed, 1 half-open, 2 open).
    breaker = [
        p
        for p in data_panels(d)
        if p["fieldConfig"]["defaults"].get("mappings")
        and any("turnout_breaker_state" in t["expr"] for t in p["targets"])
    ]
    assert [p["type"] for p in breaker] == ["state-timeline"]
    mapped = {
        value: option["text"]
        for mapping in breaker[0]["fieldConfig"]["defaults"]["mappings"]
        if mapping["type"] == "value"
        for value, option in mapping["options"].items()
    }
    assert mapped == {"0": "closed", "1": "half-open", "2": "open"}


# --- names against a live gateway ------------------------------------------------------------


async def test_every_name_in_the_queries_is_exported_by_a_live_gateway(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    a, b = await sim_factory("sim-a"), await sim_factory("sim-b")
    # No retry budget beyond one retry: the first failure fails over, the second one can't.
    resilience = {"budget_ratio": 0.0, "budget_min_retries": 1}
    config = make_config(
        {"a": a.base_url, "b": b.base_url},
        {"chat": ["m@a", "m@b"]},
        extra={"resilience": resilience},
    )
    gw = await gateway_factory(config)

    async def post(stream: bool = False) -> tuple[int, str | None]:
        async with http.post(gw.url + CHAT, json=chat(stream=stream)) as r:
            await r.read()
            return r.status, r.headers.get("x-turnout-target")

    assert await post() == (200, "m@a")
    assert await post(stream=True) == (200, "m@a")
    a.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    assert await post() == (200, "m@b")  # a failover
    assert (await post())[0] == 502  # the retry budget is spent
    async with http.get(gw.url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()

    labels: dict[str, set[str]] = {}  # sample name -> its label names
    family_of: dict[str, str] = {}  # sample name -> family name
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            family_of[sample.name] = family.name
    assert "turnout_failovers_total" in labels
    assert "turnout_retry_budget_exhausted_total" in labels

    d = load()
    used: set[str] = set()
    for title, expr in exprs(d):
        selectors, grouping = parse(expr)
        assert selectors, f"{title}: no metric in {expr}"
        known = set(SCRAPE_LABELS)
        for name, matched in selectors:
            assert name in labels, f"{title}: {name} is not in /metrics"
            assert matched <= labels[name] | SCRAPE_LABELS, f"{title}: {name}{{{matched}}}"
            known |= labels[name]
            used.add(name)
        assert grouping <= known, f"{title}: grouping by {grouping - known}"
    for var, query in variable_queries(d):
        m = LABEL_VALUES.match(query)
        assert m, f"${var}: {query}"
        ((name, matched),), _ = parse(m[1])
        assert name in labels and matched <= labels[name] | SCRAPE_LABELS, f"${var}: {query}"
        assert m[2] in labels[name] | SCRAPE_LABELS, f"${var}: no label {m[2]} on {name}"

    # The other way round: nothing the gateway exports is missing from the dashboard.
    missing = set(family_of.values()) - {family_of[n] for n in used} - NOT_ON_DASHBOARD
    assert not missing, f"exported but not on the dashboard: {sorted(missing)}"
