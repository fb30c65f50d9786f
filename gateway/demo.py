"""`turnout demo`: a gateway and three simulated providers in one process. No Redis, no keys."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from typing import Any

from gateway.config import Config, load_data
from gateway.edge.app import build_app
from gateway.edge.server import Server, wait_for_signal
from gateway.runtime import heap
from gateway.sim.faults import Fault
from gateway.sim.server import SimServer

SIM_NAMES = ("sim-a", "sim-b", "sim-c")
# sim-c speaks Anthropic's Messages API: the demo's strong model is reached by translation.
FORMATS = {"sim-a": "openai", "sim-b": "openai", "sim-c": "anthropic"}

# Faults the chaos loop cycles through on sim-a; each one fails over differently.
CHAOS = (
    {"mode": "status", "status": 503},
    {"mode": "reset"},
    {"mode": "hang"},
    {"mode": "status", "status": 429, "retry_after": 3},
    {"mode": "slow_first_token", "delay_s": 30},
)


# capability per task (0..1) against cost_quality's default floors (chat 0.6, code 0.8...)
SMALL = {"chat": 0.8, "summarization": 0.8, "extraction": 0.7, "code": 0.5, "math": 0.4,
         "reasoning": 0.5}  # fmt: skip
LARGE = {"chat": 0.9, "summarization": 0.9, "extraction": 0.9, "code": 0.95, "math": 0.9,
         "reasoning": 0.9}  # fmt: skip


def demo_config(sim_urls: dict[str, str], port: int) -> Config:
    """The embedded default: three sims behind two routes, short timeouts so failover shows."""
    timeouts = {"connect_s": 1, "headers_s": 2, "first_token_s": 3, "idle_s": 5}
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "providers": {
            name: {"base_url": url, "timeouts": timeouts, "format": FORMATS.get(name, "openai")}
            for name, url in sim_urls.items()
        },
        "targets": {
            "small@sim-a": {
                "provider": "sim-a",
                "model": "sim-small",
                "context_window": 8192,
                "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                "capabilities": SMALL,
            },
            "small@sim-b": {
                "provider": "sim-b",
                "model": "sim-small",
                "context_window": 8192,
                "price": {"input_per_mtok": 0.2, "output_per_mtok": 0.8},
                "capabilities": SMALL,
            },
            "large@sim-c": {
                "provider": "sim-c",
                "model": "sim-large",
                "context_window": 128000,
                "price": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
                "supports": ["tools", "json"],
                "capabilities": LARGE,
            },
        },
        "routes": [
            {"alias": "demo", "candidates": ["small@sim-a", "small@sim-b", "large@sim-c"]},
            # the cheapest model good enough for the task: chat -> small, code or math -> large
            {
                "alias": "smart",
                "candidates": ["small@sim-a", "small@sim-b", "large@sim-c"],
                "policy": "cost_quality",
            },
        ],
        "telemetry": {"recent_traces": 200},  # so /ui shows every request's trace
    }
    return load_data(data, source="<embedded demo>", env={})


def banner(gateway_url: str, sims: dict[str, SimServer]) -> str:
    api = gateway_url + "/v1"
    sim_lines = "\n".join(f"    {name}: {s.base_url}" for name, s in sims.items())
    first = next(iter(sims.values()))
    return f"""
Turnout demo — gateway {api}  (routes: demo, smart; in-memory health, no Redis, no keys)
  simulated providers (sim-c speaks Anthropic's Messages API; its answers are translated):
{sim_lines}

  curl:
    curl -s {api}/chat/completions -H 'Content-Type: application/json' \\
      -d '{{"model": "demo", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  Python (pip install openai):
    from openai import OpenAI
    client = OpenAI(base_url="{api}", api_key="unused")
    reply = client.chat.completions.create(
        model="demo", messages=[{{"role": "user", "content": "Hello"}}])
    print(reply.choices[0].message.content)
    print(client.responses.create(model="demo", input="Hello").output_text)  # Responses API

  Anthropic's SDK (pip install anthropic): anthropic.Anthropic(base_url="{gateway_url}",
    api_key="unused").messages.create(model="demo", max_tokens=100, messages=[...])

  break sim-a, then ask again (the answer comes from sim-b):
    curl -s -X PUT {first.url}/_sim/fault -d '{{"mode": "status", "status": 503}}'
  heal it:        curl -s -X PUT {first.url}/_sim/fault -d '{{"mode": "ok"}}'
  task-aware routing, explained (x-turnout-route; a dry run: POST /admin/route):
    curl -si {api}/chat/completions -H 'Content-Type: application/json' \\
      -H 'x-turnout-debug: route' \\
      -d '{{"model": "smart", "messages": [{{"role": "user", "content": "Write Python code"}}]}}'
  (code goes to large@sim-c, an Anthropic-format provider: see x-turnout-translation)
  target health:  curl -s {gateway_url}/admin/targets
  dashboard:      {gateway_url}/ui   (watch a failover happen and open its trace)

turnout demo ready: {api}
"""


async def _chaos(sim: SimServer, period_s: float) -> None:
    for spec in itertools.cycle(CHAOS):
        await asyncio.sleep(period_s)
        sim.state.set_fault(Fault.from_json(spec))
        print(f"chaos: {sim.state.settings.name} now {spec}", flush=True)
        await asyncio.sleep(period_s)
        sim.state.set_fault(Fault())
        print(f"chaos: {sim.state.settings.name} healed", flush=True)


async def run_demo(port: int = 8080, *, chaos: bool = False, chaos_period_s: float = 5.0) -> None:
    sims = {name: SimServer(name, chunk_interval_ms=20, format=FORMATS[name]) for name in SIM_NAMES}
    async with contextlib.AsyncExitStack() as stack:
        for sim in sims.values():
            await sim.start()
            stack.push_async_callback(sim.close)
        config = demo_config({n: s.base_url for n, s in sims.items()}, port)
        server = Server(build_app(config), config.server.host, config.server.port, grace_s=2.0)
        await server.start()
        stack.push_async_callback(server.stop)
        heap.settle()  # as `turnout serve` does
        print(banner(server.url, sims), flush=True)
        tasks = []
        if chaos:
            tasks.append(asyncio.create_task(_chaos(sims["sim-a"], chaos_period_s)))
        try:
            await wait_for_signal()
        finally:
            for t in tasks:
                t.cancel()
            print("turnout demo stopping", file=sys.stderr, flush=True)
