"""The Anthropic ingress on the spans: how a request was translated, and Anthropic's usage
(cache reads included) on the attempt's span as for any provider's (issue 15 items 3, 4)."""

from __future__ import annotations

from typing import Any

import aiohttp
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry.hub import Telemetry
from gateway.telemetry.tracing import TraceSettings
from tests.builders import SimFactory, build_config, post, start_gateway
from tests.e2e.test_anthropic_ingress import MESSAGES, N_WORDS, PROMPT, VOICE, user


async def test_the_attempt_spans_tell_the_translation_and_the_usage(
    sim_factory: SimFactory, http: aiohttp.ClientSession
) -> None:
    o = await sim_factory("o", format="openai", n_words=N_WORDS, voice=VOICE)
    a = await sim_factory("a", format="anthropic", n_words=N_WORDS, voice=VOICE)
    targets = {
        "gpt@o": {"provider": "o", "model": "gpt"},
        "claude@a": {"provider": "a", "model": "claude"},
    }
    routes = [
        {"alias": "via-openai", "candidates": ["gpt@o"]},
        {"alias": "via-anthropic", "candidates": ["claude@a"]},
    ]
    exporter = InMemorySpanExporter()
    tel = Telemetry(TraceSettings(), [SimpleSpanProcessor(exporter)])
    gw = await start_gateway(build_config({"o": o, "a": a}, routes, targets=targets), tel)
    try:
        answers: dict[str, Any] = {}
        for alias in ("via-openai", "via-anthropic"):
            body = {"model": alias, "max_tokens": 64, "messages": user(PROMPT), "top_k": 3}
            reply = await post(http, gw, body, path=MESSAGES)
            assert reply.status == 200
            answers[alias] = reply.json()["usage"]
    finally:
        await gw.stop()
    spans = {
        dict(s.attributes or {}).get("turnout.target"): s for s in exporter.get_finished_spans()
    }
    translated = dict(spans["gpt@o"].attributes or {})
    assert translated["turnout.translation"] == "anthropic->openai; lossy; dropped=top_k"
    passed = dict(spans["claude@a"].attributes or {})
    assert passed["turnout.translation"] == ""  # as sent
    for target, alias in (("gpt@o", "via-openai"), ("claude@a", "via-anthropic")):
        attrs = dict(spans[target].attributes or {})
        usage = answers[alias]
        assert attrs["gen_ai.usage.input_tokens"] == usage["input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] == usage["output_tokens"] > 0
    assert passed["gen_ai.usage.cache_read.input_tokens"] == 0  # Anthropic tells it
    assert passed["gen_ai.response.model"] == "claude"
