"""Traces and metrics: a real SDK pipeline (in-memory exporter), real sockets, real sims."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.config import Config
from gateway.edge.server import Server
from gateway.sim.faults import Fault
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.tracing import TraceSettings
from tests.builders import (
    CHAT,
    SimFactory,
    chat,
    closed_port,
    make_config,
    scrape,
    start_gateway,
    value,
)
from tests.waiting import eventually

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
SECRET_PROMPT = "my-very-private-prompt"


@pytest.fixture
async def traced() -> AsyncIterator[Any]:
    exporter = InMemorySpanExporter()
    servers: list[Server] = []

    async def start(config: Config, telemetry: Telemetry | None = None) -> Server:
        tel = telemetry or Telemetry(TraceSettings(), [SimpleSpanProcessor(exporter)])
        server = await start_gateway(config, tel)
        servers.append(server)
        return server

    start.exporter = exporter  # type: ignore[attr-defined]
    yield start
    for s in servers:
        await s.stop()


async def test_trace_joins_the_callers_trace_and_tells_the_failover(
    traced: Any, sim_factory: SimFactory
) -> None:
    bad, good = await sim_factory("sim-a"), await sim_factory("sim-b")
    bad.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    gw = await traced(
        make_config({"a": bad.base_url, "b": good.base_url}, {"chat": ["m@a", "m@b"]})
    )
    headers = {
        "traceparent": f"00-{TRACE_ID}-{PARENT}-01",
        "Authorization": "Bearer client-secret-key",
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + CHAT, json=chat(SECRET_PROMPT, stream=False), headers=headers) as r,
    ):
        assert r.status == 200
        await r.read()
    spans = traced.exporter.get_finished_spans()
    server = [sp for sp in spans if sp.kind is SpanKind.SERVER]
    clients = sorted(
        (sp for sp in spans if sp.kind is SpanKind.CLIENT), key=lambda sp: sp.start_time or 0
    )
    assert len(server) == 1 and len(clients) == 2
    root = server[0]
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert root.parent is not None and format(root.parent.span_id, "016x") == PARENT
    attrs = dict(root.attributes or {})
    assert attrs["turnout.route"] == "chat"
    assert attrs["turnout.policy"] == "priority"
    assert list(attrs["turnout.candidates"]) == ["m@a", "m@b"]
    assert attrs["http.response.status_code"] == 200
    assert [e.name for e in root.events] == ["turnout.failover"]
    first, second = clients
    assert first.name == "chat m" and second.name == "chat m"
    for sp, target, attempt in ((first, "m@a", 1), (second, "m@b", 2)):
        a = dict(sp.attributes or {})
        assert sp.parent is not None and sp.parent.span_id == root.context.span_id
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == "m"
        assert a["server.address"] == "127.0.0.1"
        assert a["turnout.target"] == target
        assert a["turnout.attempt"] == attempt
    assert dict(first.attributes or {})["error.type"] == "status 503"
    ok = dict(second.attributes or {})
    assert ok["gen_ai.provider.name"] == "b"
    assert ok["gen_ai.response.model"] == "m"
    assert ok["gen_ai.usage.output_tokens"] > 0
    # The provider got the attempt's span as its parent, in the caller's trace.
    sent = good.state.attempts()[0]["headers"]["traceparent"]
    assert sent.split("-")[1] == TRACE_ID
    assert sent.split("-")[2] == format(second.context.span_id, "016x")
    # Nothing secret or private in any span.
    dump = repr(
        [(sp.name, dict(sp.attributes or {}), [e.attributes for e in sp.events]) for sp in spans]
    )
    assert SECRET_PROMPT not in dump and "client-secret-key" not in dump and "key-b" not in dump


async def test_stream_span_ends_with_usage_and_ttft(traced: Any, sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim-a", chunk_interval_ms=5)
    gw = await traced(make_config({"a": sim.base_url}, {"chat": ["m@a"]}))
    req = chat(SECRET_PROMPT, stream=True) | {"stream_options": {"include_usage": True}}
    async with aiohttp.ClientSession() as s, s.post(gw.url + CHAT, json=req) as r:
        assert r.status == 200
        await r.read()
    client = [sp for sp in traced.exporter.get_finished_spans() if sp.kind is SpanKind.CLIENT]
    assert len(client) == 1
    a = dict(client[0].attributes or {})
    assert a["turnout.outcome"] == "success"
    assert a["turnout.ttft_ms"] > 0
    assert a["gen_ai.usage.output_tokens"] > 0


async def test_a_dropped_malformed_event_is_on_the_attempt_span_and_logged_once(
    traced: Any, sim_factory: SimFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await sim_factory("sim-a", chunk_interval_ms=5)
    sim.state.set_fault(Fault.from_json({"mode": "garbled", "after_chunks": 4, "times": 2}))
    # A target id of its own: the log line is rate-limited per target, per process.
    gw = await traced(make_config({"garbler": sim.base_url}, {"chat": ["m@garbler"]}))
    with caplog.at_level(logging.WARNING, logger="turnout.exchange"):
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.url + CHAT, json=chat(SECRET_PROMPT, stream=True)) as r,
        ):
            assert r.status == 200
            body = await r.read()
        assert body.endswith(b"data: [DONE]\n\n") and b"event: error" not in body

        def client_span_ended() -> None:
            spans = traced.exporter.get_finished_spans()
            assert len([sp for sp in spans if sp.kind is SpanKind.CLIENT]) == 1

        await eventually(client_span_ended)
    spans = traced.exporter.get_finished_spans()
    [span] = [sp for sp in spans if sp.kind is SpanKind.CLIENT]
    assert dict(span.attributes or {})["turnout.outcome"] == "success"
    events = [e for e in span.events if e.name == "turnout.stream.malformed"]
    assert len(events) == 1
    assert dict(events[0].attributes or {}) == {
        "turnout.malformed_events": 2,
        "turnout.malformed_max": 3,
    }
    lines = [rec.getMessage() for rec in caplog.records if "malformed" in rec.getMessage()]
    assert len(lines) == 1, lines
    assert "m@garbler had 2 malformed event(s)" in lines[0]
    assert "choices" not in lines[0]  # never the event's bytes


async def test_metrics_are_prometheus_text_and_move(traced: Any, sim_factory: SimFactory) -> None:
    bad, good = await sim_factory("sim-a"), await sim_factory("sim-b")
    gw = await traced(
        make_config({"a": bad.base_url, "b": good.base_url}, {"chat": ["m@a", "m@b"]})
    )
    async with aiohttp.ClientSession() as s:

        async def metrics() -> dict[Any, float]:
            async with s.get(gw.url + "/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                return scrape(await r.text())

        before = await metrics()
        for _ in range(3):
            async with s.post(gw.url + CHAT, json=chat(SECRET_PROMPT, stream=False)) as r:
                assert r.status == 200
        bad.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
        for _ in range(5):
            async with s.post(gw.url + CHAT, json=chat(SECRET_PROMPT, stream=False)) as r:
                assert r.status == 200
        after = await metrics()
    assert (
        value(after, "turnout_requests_total", route="chat", status="200")
        - value(before, "turnout_requests_total", route="chat", status="200")
        == 8
    )
    assert value(after, "turnout_attempts_total", target="m@a", outcome="provider_failure") == 5
    assert value(after, "turnout_failovers_total", target="m@a", reason="status 503") == 5
    assert value(after, "turnout_breaker_state", target="m@a") == 2.0  # open
    assert value(after, "turnout_breaker_state", target="m@b") == 0.0
    assert value(after, "gen_ai_client_operation_duration_seconds_count", target="m@b") == 5
    assert value(after, "gen_ai_client_token_usage_total", target="m@a") > 0
    assert value(after, "turnout_redis_degraded", backend="memory") == 0.0


async def test_a_down_collector_never_slows_requests_or_shutdown(sim_factory: SimFactory) -> None:
    sim = await sim_factory("sim-a")
    config = make_config({"a": sim.base_url}, {"chat": ["m@a"]})
    down = f"http://127.0.0.1:{closed_port()}"
    tel = Telemetry(TraceSettings(exporter="otlp", otlp_endpoint=down))
    server = await start_gateway(config, tel)
    try:
        async with aiohttp.ClientSession() as s:
            times = []
            for _ in range(50):
                t = time.perf_counter()
                async with s.post(server.url + CHAT, json=chat(SECRET_PROMPT, stream=False)) as r:
                    assert r.status == 200
                times.append(time.perf_counter() - t)
        assert sorted(times)[48] < 0.1  # no request waits for the collector
    finally:
        t = time.perf_counter()
        await server.stop()
        assert time.perf_counter() - t < 5.0  # flushing to a dead collector is bounded
    await asyncio.sleep(0)


def test_json_logs_carry_the_trace_id() -> None:
    import logging

    import orjson

    from gateway.telemetry.logs import JsonFormatter

    exporter = InMemorySpanExporter()
    tel = Telemetry(TraceSettings(), [SimpleSpanProcessor(exporter)])
    record = logging.LogRecord(
        "turnout.x", logging.WARNING, __file__, 1, "failed %s", ("m@a",), None
    )
    with tel.tracer.start_as_current_span("POST /v1/chat/completions") as span:
        line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == "failed m@a" and line["level"] == "warning"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    outside = orjson.loads(JsonFormatter().format(record))
    assert "trace_id" not in outside


async def test_metrics_can_also_be_pushed_by_otlp(sim_factory: SimFactory) -> None:
    """metrics_otlp adds a periodic OTLP reader beside /metrics; a down collector costs
    nothing on the request path and shutdown stays bounded."""
    sim = await sim_factory("sim-a")
    config = make_config({"a": sim.base_url}, {"chat": ["m@a"]})
    down = f"http://127.0.0.1:{closed_port()}"
    tel = Telemetry(TraceSettings(otlp_endpoint=down, metrics_otlp=True))
    server = await start_gateway(config, tel)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(server.url + CHAT, json=chat(SECRET_PROMPT, stream=False)) as r:
                assert r.status == 200
            async with s.get(server.url + "/metrics") as r:
                assert b"turnout_requests_total" in await r.read()
    finally:
        t = time.perf_counter()
        await server.stop()
        assert time.perf_counter() - t < 6.0
