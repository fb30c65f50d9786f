"""LangChain's ChatOpenAI pointed at the gateway: a second real client, invoke and stream."""

from __future__ import annotations

import asyncio

import pytest

from gateway.sim.answers import answer_text
from gateway.sim.faults import Fault
from tests.builders import GatewayFactory, SimFactory, make_config

langchain_openai = pytest.importorskip("langchain_openai")


async def test_chatopenai_invoke_and_stream_through_a_failover(
    sim_factory: SimFactory, gateway_factory: GatewayFactory
) -> None:
    bad, good = await sim_factory("sim-a"), await sim_factory("sim-b")
    bad.state.set_fault(Fault.from_json({"mode": "status", "status": 503}))
    gw = await gateway_factory(
        make_config({"a": bad.base_url, "b": good.base_url}, {"chat": ["m@a", "m@b"]})
    )
    llm = langchain_openai.ChatOpenAI(
        model="chat", base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=10
    )
    expected = answer_text("sim-b", "m", "Hello", 12)
    reply = await llm.ainvoke("Hello")
    assert reply.content == expected
    chunks = [c.content async for c in llm.astream("Hello")]
    assert len(chunks) > 3 and "".join(str(c) for c in chunks) == expected
    # The sync client too (in a thread: the gateway runs on this event loop).
    assert (await asyncio.to_thread(llm.invoke, "Hello")).content == expected
