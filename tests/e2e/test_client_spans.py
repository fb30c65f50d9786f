"""A client key's name and labels on the request's server span (issue 16 item 1: "labels that
go on metrics and spans"), and a Responses request's translation on its attempt's span (issue
15 item 4), read from a real gateway's spans."""

from __future__ import annotations

import aiohttp
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.config import load_data
from gateway.config.clients import digest
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.tracing import TraceSettings
from tests.builders import SimFactory, chat, post, start_gateway

KEY = "tk-spans-0123456789abcdefghijklmnop"


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


async def test_the_server_span_names_the_client_and_its_labels(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await sim_factory("s")
    config = load_data(
        {
            "server": {"host": "127.0.0.1", "port": 0},
            "providers": {"s": {"base_url": sim.base_url, "api_key": "key-s"}},
            "routes": [{"alias": "chat", "candidates": ["m@s"]}],
            "clients": {
                "web": {"key_sha256": digest(KEY), "labels": {"team": "checkout", "app": "web"}}
            },
        },
        env={},
    )
    exporter = InMemorySpanExporter()
    gw = await start_gateway(config, Telemetry(TraceSettings(), [SimpleSpanProcessor(exporter)]))
    try:
        auth = {"Authorization": f"Bearer {KEY}"}
        assert (await post(http, gw, chat("hello", model="chat"), headers=auth)).status == 200
        responses = {"model": "chat", "input": "hello"}
        reply = await post(http, gw, responses, headers=auth, path="/v1/responses")
        assert reply.status == 200
    finally:
        await gw.stop()
    spans = exporter.get_finished_spans()
    servers = [attributes(s) for s in spans if s.kind is SpanKind.SERVER]
    assert len(servers) == 2
    for attrs in servers:
        assert attrs["turnout.client"] == "web"
        assert (attrs["turnout.client.team"], attrs["turnout.client.app"]) == ("checkout", "web")
        assert KEY not in str(attrs)  # the key itself never
    attempts = [attributes(s) for s in spans if s.kind is SpanKind.CLIENT]
    assert [a.get("turnout.translation") for a in attempts] == ["", "responses->openai"]
