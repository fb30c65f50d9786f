"""The live dashboard: the recent-traces buffer, its JSON feeds, and /ui in a real browser.

The browser test drives Debian's chromium (`/usr/bin/chromium` + `/usr/bin/chromedriver`,
installed by .ci/run) through Selenium: no browser is downloaded. The gateway and the sims run
on the test's event loop; every blocking WebDriver call goes through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from gateway.admin.session import COOKIE
from gateway.edge.server import Server
from gateway.sim.faults import Fault
from gateway.telemetry.recent import RecentTraces, Timeline
from tests.builders import CHAT, REPO_ROOT, GatewayFactory, SimFactory, chat, make_config

ARTIFACTS = REPO_ROOT / "test-artifacts"
PROMPT = "a private prompt"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN_TOKEN = "dashboard-admin-token-0123"
T = TypeVar("T")


# -- the buffer ------------------------------------------------------------------------------


@pytest.fixture
def recorder() -> Iterator[tuple[RecentTraces, trace.Tracer]]:
    recent = RecentTraces(max_traces=5, max_spans=8)
    provider = TracerProvider()
    provider.add_span_processor(recent)
    yield recent, provider.get_tracer("test")
    provider.shutdown()


def request_trace(tracer: trace.Tracer, route: str = "chat", fail_first: bool = True) -> str:
    """A SERVER span with one CLIENT span per attempt, like the gateway makes."""
    with tracer.start_as_current_span(
        "POST /v1/chat/completions",
        kind=SpanKind.SERVER,
        attributes={"turnout.route": route, "turnout.request_id": "r1"},
    ) as root:
        targets = ["m@a", "m@b"] if fail_first else ["m@b"]
        for n, target in enumerate(targets, 1):
            failed = fail_first and n == 1
            with tracer.start_as_current_span(
                "chat m",
                kind=SpanKind.CLIENT,
                attributes={
                    "turnout.target": target,
                    "turnout.attempt": n,
                    "turnout.outcome": "provider_failure" if failed else "success",
                    "gen_ai.prompt": "secret prompt",
                    "http.request.header.authorization": "Bearer sk-secret",
                },
            ):
                pass
            if failed:
                root.add_event(
                    "turnout.failover",
                    {
                        "turnout.target": target,
                        "turnout.reason": "status 503",
                        "turnout.attempt": n,
                    },
                )
        root.set_attribute("http.response.status_code", 200)
        return format(root.get_span_context().trace_id, "032x")


def test_buffer_groups_spans_by_trace(recorder: tuple[RecentTraces, trace.Tracer]) -> None:
    recent, tracer = recorder
    trace_id = request_trace(tracer)
    [t] = recent.snapshot()
    assert t["trace_id"] == trace_id
    assert t["name"] == "POST /v1/chat/completions"
    assert t["route"] == "chat" and t["request_id"] == "r1"
    assert t["status"] == "ok" and t["http_status"] == 200
    assert t["attempts"] == 2 and t["failovers"] == 1 and t["target"] == "m@b"
    assert t["start"] > 1e9 and t["duration_ms"] >= 0
    kinds = [s["kind"] for s in t["spans"]]
    assert kinds == ["server", "client", "client"]  # in start order
    root, first, second = t["spans"]
    assert root["start_offset_ms"] == 0 and root["parent_id"] is None
    assert first["parent_id"] == root["span_id"] == second["parent_id"]
    assert 0 <= first["start_offset_ms"] <= second["start_offset_ms"] <= t["duration_ms"]
    assert first["attributes"]["turnout.target"] == "m@a"
    assert [e["name"] for e in root["events"]] == ["turnout.failover"]
    assert root["events"][0]["attributes"]["turnout.reason"] == "status 503"
    # Content and credentials never make it into the feed, whatever a span carries.
    dump = repr(t)
    assert "secret prompt" not in dump and "sk-secret" not in dump
    assert recent.get(trace_id) == t
    assert recent.get("not-hex") is None and recent.get("0" * 32) is None


def test_buffer_is_bounded_and_keeps_the_newest(
    recorder: tuple[RecentTraces, trace.Tracer],
) -> None:
    recent, tracer = recorder
    ids = [request_trace(tracer, route=f"r{i}", fail_first=False) for i in range(12)]
    snap = recent.snapshot()
    assert [t["trace_id"] for t in snap] == ids[::-1][:5]  # newest first, 5 kept
    assert recent.counts() == (5, 0)
    assert [t["route"] for t in recent.snapshot(limit=2)] == ["r11", "r10"]
    # Spans per trace are bounded too.
    with tracer.start_as_current_span("POST /x", kind=SpanKind.SERVER):
        for _ in range(20):
            tracer.start_span("chat m", kind=SpanKind.CLIENT).end()
    [bounded] = recent.snapshot(limit=1)
    assert len(bounded["spans"]) == 9 and bounded["dropped_spans"] == 12  # 8 + the root
    assert bounded["name"] == "POST /x" and bounded["status"] == "ok"


def test_in_progress_traces_wait_for_their_root(
    recorder: tuple[RecentTraces, trace.Tracer],
) -> None:
    recent, tracer = recorder
    with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as root:
        tracer.start_span("chat m", kind=SpanKind.CLIENT).end()
        assert recent.snapshot() == [] and recent.counts() == (1, 1)
        pending = recent.get(format(root.get_span_context().trace_id, "032x"))
        assert pending is not None and pending["status"] == "in_progress"
    assert [t["attempts"] for t in recent.snapshot()] == [1]


def test_a_span_inside_the_callers_trace_is_a_root(
    recorder: tuple[RecentTraces, trace.Tracer],
) -> None:
    recent, tracer = recorder
    caller = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    ctx = trace.set_span_in_context(NonRecordingSpan(caller))
    with tracer.start_as_current_span("POST /v1/chat/completions", context=ctx):
        pass
    [t] = recent.snapshot()
    assert t["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert t["spans"][0]["parent_id"] == "b7ad6b7169203331"


def test_failovers_reach_the_timeline(recorder: tuple[RecentTraces, trace.Tracer]) -> None:
    recent, tracer = recorder
    trace_id = request_trace(tracer)
    [event] = recent.timeline.snapshot()
    assert event["kind"] == "failover" and event["target"] == "m@a"
    assert event["reason"] == "status 503" and event["attempt"] == 1
    assert event["route"] == "chat" and event["trace_id"] == trace_id


def test_timeline_is_bounded_newest_first() -> None:
    tl = Timeline(max_events=3)
    tl.add("breaker", 100.0, target="a", to="open", reason="5 consecutive failures")
    tl.add("breaker", 110.0, target="a", to="half_open", reason="open time elapsed")
    [newest, *_] = tl.snapshot()
    assert newest["kind"] == "breaker" and newest["to"] == "half_open"
    for i in range(5):
        tl.add("failover", 200.0 + i, target="a")
    events = tl.snapshot()
    assert [e["at"] for e in events] == [204.0, 203.0, 202.0]  # bounded, newest first
    assert [e["at"] for e in tl.snapshot(limit=1)] == [204.0]
    assert [e["at"] for e in tl.snapshot(since=events[1]["seq"])] == [204.0]


def test_buffer_survives_threads(recorder: tuple[RecentTraces, trace.Tracer]) -> None:
    """The SDK may end spans on any thread: writers and readers at once, nothing breaks."""
    recent, tracer = recorder
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for _ in range(300):
                request_trace(tracer)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        try:
            while not done.is_set():
                for t in recent.snapshot():
                    assert t["attempts"] == 2
                recent.timeline.snapshot()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=write) for _ in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert errors == []
    assert recent.counts() == (5, 0)
    assert len(recent.timeline.snapshot()) == 500  # the timeline's own bound


# -- the feeds -------------------------------------------------------------------------------


async def failover_gateway(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, admin_token: str = ""
) -> Any:
    bad, good = await sim_factory("sim-a"), await sim_factory("sim-b")
    server = {"host": "127.0.0.1", "port": 0, "admin_token": admin_token}
    gw = await gateway_factory(
        make_config(
            {"a": bad.base_url, "b": good.base_url},
            {"chat": ["m@a", "m@b"]},
            # the dashboard's trace buffer on
            extra={"telemetry": {"recent_traces": 200}, "server": server},
        )
    )
    return bad, gw


async def test_feeds_show_failovers_and_the_breaker_opening(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    bad, gw = await failover_gateway(sim_factory, gateway_factory)
    async with http.get(gw.url + "/admin/events") as r:
        assert r.status == 200 and (await r.json())["data"] == []
    bad.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for _ in range(5):
        async with http.post(gw.url + CHAT, json=chat(PROMPT)) as r:
            assert r.status == 200
    async with http.get(gw.url + "/admin/traces?limit=3") as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        feed = await r.json()
    assert feed["capacity"] == 200 and feed["held"] == 5 and len(feed["data"]) == 3
    t = feed["data"][0]
    assert t["route"] == "chat" and t["http_status"] == 200 and t["target"] == "m@b"
    assert t["attempts"] == 2 and t["failovers"] == 1
    attempts = [s for s in t["spans"] if s["kind"] == "client"]
    assert attempts[0]["attributes"]["error.type"] == "status 503"
    assert attempts[1]["attributes"]["turnout.outcome"] == "success"
    assert "a private prompt" not in repr(feed) and "key-a" not in repr(feed)
    async with http.get(gw.url + f"/admin/traces/{t['trace_id']}") as r:
        assert r.status == 200 and (await r.json())["trace_id"] == t["trace_id"]
    async with http.get(gw.url + "/admin/events") as r:
        events = (await r.json())["data"]
    kinds = {(e["kind"], e["target"]) for e in events}
    assert ("failover", "m@a") in kinds and ("breaker", "m@a") in kinds
    [opened] = [e for e in events if e["kind"] == "breaker"]
    assert opened["to"] == "open" and opened["reason"]
    async with http.get(gw.url + "/admin/events") as r:  # seen again: not recorded twice
        assert len([e for e in (await r.json())["data"] if e["kind"] == "breaker"]) == 1


async def test_ui_and_its_assets_are_served_locally(
    sim_factory: SimFactory, gateway_factory: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    _, gw = await failover_gateway(sim_factory, gateway_factory)
    async with http.get(gw.url + "/ui") as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        html = await r.text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert set(refs) == {"ui/dashboard.css", "ui/dashboard.js", "data:,"}
    async with http.get(gw.url + "/ui/login", allow_redirects=False) as r:
        assert r.status == 303  # no admin token: nothing to sign in to
    for name, ctype in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        async with http.get(gw.url + "/ui/" + name) as r:
            assert r.status == 200 and r.content_type == ctype
            assert not re.search(r"https?://|//cdn|@import", await r.text())
    async with http.get(gw.url + "/ui/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "../ui"
    for path, status in (
        ("/ui/nope.js", 404),
        ("/ui/dashboard.html", 404),  # the page is /ui
        ("/ui/..%2Fapp.py", 404),
        ("/admin/traces/0123", 404),
        ("/admin/traces?limit=0", 400),
        ("/admin/events?since=x", 400),
    ):
        async with http.get(gw.url + path) as r:
            assert r.status == status, path
            assert "error" in await r.json()


# -- the page in a real browser --------------------------------------------------------------


def _browser_missing() -> str | None:
    if os.environ.get("CI"):
        return None  # CI installs chromium (.ci/run): a missing browser must fail there
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing: apt-get install -y chromium chromium-driver"
    return None


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    reason = _browser_missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


async def page_shows(check: Callable[[], T | None], what: str, timeout_s: float = 5.0) -> T:
    """Run a (blocking) browser check in a thread until it returns something truthy."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if loop.time() > until:
            raise AssertionError(f"the page did not show {what} within {timeout_s} s")
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_dashboard_in_a_real_browser(
    browser: Any,
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    from selenium.webdriver.common.by import By

    bad, gw = await failover_gateway(sim_factory, gateway_factory, ADMIN_TOKEN)
    gw_server: Server = gw

    def css(selector: str) -> list[Any]:
        return list(browser.find_elements(By.CSS_SELECTOR, selector))

    def sign_in() -> None:
        browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    # The admin token is set: the dashboard sends a stranger to its sign-in form, and the
    # form's session cookie (never the token, never in a URL) opens the feeds.
    await asyncio.to_thread(browser.get, gw_server.url + "/ui")
    await page_shows(lambda: css("form#login"), "the sign-in form")
    assert browser.current_url == gw_server.url + "/ui/login"
    await asyncio.to_thread(sign_in)
    await page_shows(lambda: browser.current_url == gw_server.url + "/ui", "the dashboard")
    [session] = [c for c in browser.get_cookies() if c["name"] == COOKIE]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in session["value"]
    # It loads and lists the targets.
    rows = await page_shows(lambda: css("#targets tbody tr[data-target]"), "the targets")
    assert [r.get_attribute("data-target") for r in rows] == ["m@a", "m@b"]
    assert await page_shows(lambda: css("#conn[data-state='live']"), "the live marker")

    # Break sim-a: every request fails over to sim-b, and sim-a's breaker opens.
    async with http.post(gw_server.url + CHAT, json=chat(PROMPT)) as r:
        assert r.status == 200
    bad.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    for _ in range(5):
        async with http.post(gw_server.url + CHAT, json=chat(PROMPT)) as r:
            assert r.status == 200
    opened = await page_shows(
        lambda: css("#targets tr[data-target='m@a'][data-state='open'] .state"),
        "m@a's breaker open",
    )
    assert opened[0].text == "open"
    assert css("#targets tr[data-target='m@b']")[0].get_attribute("data-state") == "closed"
    breaker = await page_shows(
        lambda: css("#timeline li[data-kind='breaker'][data-target='m@a']"), "the transition"
    )
    assert "breaker open" in breaker[0].text
    assert css("#timeline li[data-kind='failover'][data-target='m@a']")

    # A failover trace: click it, its waterfall has two attempts.
    failover_rows = await page_shows(
        lambda: [
            r
            for r in css("#traces tbody tr[data-trace-id]")
            if r.get_attribute("data-failovers") == "1"
        ],
        "a failover trace",
    )
    await asyncio.to_thread(failover_rows[0].click)
    attempts = await page_shows(lambda: css("#waterfall .wf-row.attempt"), "the waterfall")
    assert len(attempts) == 2
    assert [a.get_attribute("data-target") for a in attempts] == ["m@a", "m@b"]
    assert [a.get_attribute("data-outcome") for a in attempts] == ["provider_failure", "success"]
    assert "failover: status 503" in attempts[0].text
    bars = [a.find_element(By.CSS_SELECTOR, ".bar") for a in attempts]
    first, second = (b.rect for b in bars)
    assert first["width"] > 0 and second["x"] >= first["x"]  # laid out by start offset

    ARTIFACTS.mkdir(exist_ok=True)
    assert await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "dashboard.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors

    # Signing out ends it: back to the form, and /ui sends the browser there again.
    await asyncio.to_thread(browser.find_element(By.CSS_SELECTOR, "#logout button").click)
    await page_shows(lambda: css("form#login"), "the sign-in form after signing out")
    assert not [c for c in browser.get_cookies() if c["name"] == COOKIE]
    await asyncio.to_thread(browser.get, gw_server.url + "/ui")
    await page_shows(lambda: css("form#login"), "the sign-in form again")
