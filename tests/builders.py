"""What tests build, send and read back, in one place (fixtures are in tests/conftest.py, waiting
for a side effect is tests/waiting.py):

- request bodies: `chat()` and the API paths;
- timeout presets for providers (each named for what the tests using it need);
- configs: `make_config()`;
- ports, sims, gateways and `turnout serve` processes started outside fixtures;
- a client's view of the answers: `post()` and `Reply`, SSE, `/admin/targets`, `/metrics`;
- the resilience tests' pair of sims `p` and `b` behind route `chat` (`start_pair()`), their
  config (`build_config()`), prompt, answers (`expected()`) and errors (`error_of()`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Config, load_data
from gateway.edge.app import build_app
from gateway.edge.server import Server
from gateway.sim.answers import answer_text
from gateway.sim.faults import Fault
from gateway.sim.server import SimServer
from gateway.telemetry.hub import Telemetry

# Shared with the benches: tests import ops, never the reverse.
from ops.bench.net import free_port
from ops.bench.redisproc import RedisProcess, SentinelProcess
from ops.faults.harness import sse_events  # a client's SSE parser, not the gateway's
from tests.waiting import until

__all__ = [
    "CHAT",
    "ERROR_KEYS",
    "FAILOVER_TIMEOUTS",
    "FAST_TIMEOUTS",
    "LONG_ANSWER_TIMEOUTS",
    "N_WORDS",
    "PATIENT_TIMEOUTS",
    "PROMPT",
    "REPO_ROOT",
    "STALL_TIMEOUTS",
    "TIGHT_TIMEOUTS",
    "GatewayFactory",
    "RedisProcess",
    "Reply",
    "SentinelProcess",
    "SimFactory",
    "admin_targets",
    "admission",
    "answer_of",
    "build_config",
    "chat",
    "closed_port",
    "error_of",
    "expected",
    "free_port",
    "kill_group",
    "last_seq",
    "make_config",
    "post",
    "scrape",
    "set_fault",
    "sse_events",
    "start_gateway",
    "start_pair",
    "start_serve",
    "start_sim",
    "stream_text",
    "upstream_app",
    "value",
    "wait_healthy",
]

REPO_ROOT = Path(__file__).resolve().parents[1]

# --- request bodies ---------------------------------------------------------------------------

CHAT = "/v1/chat/completions"


def chat(
    prompt: str = "hi",
    *,
    model: str | None = "chat",
    stream: bool | None = None,
    system: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A chat completion request body: an optional system turn, then one user turn.

    `model` and `stream` are left out of the body when None; `extra` adds fields (tools,
    max_tokens, stream_options...)."""
    body: dict[str, Any] = {} if model is None else {"model": model}
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": prompt})
    body["messages"] = messages
    if stream is not None:
        body["stream"] = stream
    body.update(extra)
    return body


# --- provider timeouts ------------------------------------------------------------------------

# One second for every phase, no total: `make_config`'s default.
FAST_TIMEOUTS = {"connect_s": 1.0, "headers_s": 1.0, "first_token_s": 1.0, "idle_s": 1.0}
# Long, slowly paced streams never time out: only the client going away ends them.
PATIENT_TIMEOUTS = {"connect_s": 2.0, "headers_s": 5.0, "first_token_s": 5.0, "idle_s": 5.0}
# A hang before the first byte fails over within 0.3 s; a whole answer gets 5 s.
FAILOVER_TIMEOUTS = {
    "connect_s": 1.0,
    "headers_s": 0.3,
    "first_token_s": 0.3,
    "idle_s": 0.5,
    "total_s": 5.0,
}
# A stream that stalls for 0.5 s is cut; answers get 10 s in all.
STALL_TIMEOUTS = {
    "connect_s": 1.0,
    "headers_s": 1.0,
    "first_token_s": 1.0,
    "idle_s": 0.5,
    "total_s": 10.0,
}
# first_token_s and headers_s are short; a non-streaming answer gets the whole total_s.
LONG_ANSWER_TIMEOUTS = {
    "connect_s": 1.0,
    "headers_s": 0.3,
    "first_token_s": 0.3,
    "idle_s": 0.5,
    "total_s": 0.8,
}
# Every fault ends an attempt within 0.6 s.
TIGHT_TIMEOUTS = {
    "connect_s": 0.5,
    "headers_s": 0.2,
    "first_token_s": 0.2,
    "idle_s": 0.2,
    "total_s": 0.6,
}

# --- configs ----------------------------------------------------------------------------------


# The configs built here fail over at once: most tests pin failover itself (which target, how
# many attempts); same-target retries (on by default) have their own tests, which ask for them.
NO_SAME_TARGET_RETRIES: dict[str, Any] = {"same_target_retries": 0}


def make_config(
    providers: dict[str, str],
    routes: dict[str, list[str]],
    *,
    timeouts: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
    provider_timeouts: dict[str, dict[str, float]] | None = None,
) -> Config:
    """A config with one provider per `name -> base_url` and routes `alias -> [target ids]`.

    Target ids are `model@provider`, so no `targets:` section is needed. `provider_timeouts`
    gives some providers their own timeouts instead of `timeouts`.
    """
    own = provider_timeouts or {}
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {
            name: {
                "base_url": url,
                "api_key": f"key-{name}",
                "timeouts": own.get(name) or timeouts or FAST_TIMEOUTS,
            }
            for name, url in providers.items()
        },
        "routes": [{"alias": a, "candidates": c} for a, c in routes.items()],
    }
    if extra:
        data.update(extra)
    data["resilience"] = {**NO_SAME_TARGET_RETRIES, **data.get("resilience", {})}
    return load_data(data, env={})


# --- ports, sims, gateways and processes ------------------------------------------------------


@contextlib.asynccontextmanager
async def upstream_app(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    path: str = "/v1/chat/completions",
) -> AsyncIterator[str]:
    """A one-route aiohttp server on loopback, for a provider's behaviour the sims have no
    mode for: `handler` answers POST `path`. Yields the base URL to configure (`.../v1`)."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused): a `free_port` nobody takes."""
    return free_port()


SimFactory = Callable[..., Awaitable[SimServer]]
GatewayFactory = Callable[[Config], Awaitable[Server]]


async def start_sim(name: str = "sim", **kwargs: Any) -> SimServer:
    """A started sim (`SimServer` kwargs); the caller closes it (fixtures: `sim_factory`)."""
    sim = SimServer(name, **kwargs)
    await sim.start()
    return sim


def set_fault(sim: SimServer, spec: dict[str, Any]) -> None:
    """Give `sim` the fault `spec` (`Fault.from_json`'s shape), replacing its current one."""
    sim.state.set_fault(Fault.from_json(spec))


async def start_gateway(config: Config, telemetry: Telemetry | None = None) -> Server:
    """A started gateway on an ephemeral loopback port (`.url`); the caller stops it (fixtures:
    `gateway_factory`)."""
    server = Server(build_app(config, telemetry=telemetry), "127.0.0.1", 0, grace_s=1.0)
    await server.start()
    return server


def start_serve(config: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """`turnout serve -c config --port port [extra]` as a real process, in its own session."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "-c", str(config), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so a failed test can kill the supervisor and its workers
    )
    return proc


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a `start_serve` process and its workers, if it still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def wait_healthy(port: int, timeout_s: float = 10.0) -> None:
    """Wait until the gateway on `port` answers `/healthz` with 200."""
    async with aiohttp.ClientSession() as s:

        async def healthy() -> bool:
            try:
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await until(healthy, timeout_s)


# --- a client's view of the answers -----------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    started: float = 0.0  # monotonic, just before the request was sent
    elapsed: float = 0.0

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def target(self) -> str | None:
        return self.headers.get("x-turnout-target")

    @property
    def attempts(self) -> str | None:
        return self.headers.get("x-turnout-attempts")


async def post(
    http: aiohttp.ClientSession,
    gw: Server,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = CHAT,
) -> Reply:
    """POST `body` to the gateway and read the whole answer."""
    started = time.monotonic()
    async with http.post(gw.url + path, json=body, headers=headers or {}) as resp:
        data = await resp.read()
        return Reply(
            resp.status,
            {k.lower(): v for k, v in resp.headers.items()},
            data,
            started,
            time.monotonic() - started,
        )


def stream_text(body: bytes) -> str:
    """The text of a complete chat stream; asserts it is well formed and ends with [DONE]."""
    events = sse_events(body)
    assert events and events[-1] == (None, "[DONE]"), events[-1:]
    text = []
    for name, data in events[:-1]:
        assert name is None, (name, data)
        for choice in orjson.loads(data)["choices"]:
            text.append(choice["delta"].get("content") or "")
    return "".join(text)


def answer_of(reply: Reply, stream: bool) -> str:
    """The answer's text, streamed or not (asserts a 200 of the right content type)."""
    assert reply.status == 200, reply.body
    if stream:
        assert reply.headers["content-type"].startswith("text/event-stream")
        return stream_text(reply.body)
    return str(reply.json()["choices"][0]["message"]["content"])


async def admin_targets(http: aiohttp.ClientSession, gw: Server) -> dict[str, dict[str, Any]]:
    """`GET /admin/targets`, by target id."""
    async with http.get(gw.url + "/admin/targets") as resp:
        assert resp.status == 200
        data = await resp.json()
    return {t["id"]: t for t in data["data"]}


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus text exposition, as `(sample name, labels) -> value`."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of the `scrape`d samples named `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


# --- two sims behind one route (the test_resilience_* files) ----------------------------------

# The prompt and answer length of the resilience tests: `expected()` is a sim's answer to it.
PROMPT = "how do breakers work"
N_WORDS = 6
ERROR_KEYS = {"message", "type", "code", "param"}  # the fields of OpenAI's error object


def build_config(
    sims: dict[str, SimServer],
    routes: list[dict[str, Any]],
    *,
    timeouts: dict[str, float] | None = None,
    targets: dict[str, Any] | None = None,
    resilience: dict[str, Any] | None = None,
    breaker: dict[str, Any] | None = None,
) -> Config:
    """One provider per sim (named like it, in the sim's wire format); routes and targets
    written out in full."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "providers": {
            name: {
                "base_url": sim.base_url,
                "api_key": f"key-{name}",
                "timeouts": timeouts or STALL_TIMEOUTS,
                "format": sim.state.settings.format,  # the provider speaks what its sim speaks
            }
            for name, sim in sims.items()
        },
        "routes": routes,
    }
    if targets is not None:
        data["targets"] = targets
    data["resilience"] = {**NO_SAME_TARGET_RETRIES, **(resilience or {})}
    if breaker is not None:
        data["health"] = {"breaker": breaker}
    return load_data(data, env={})


def expected(sim: str, model: str = "m") -> str:
    """What sim `sim` answers `PROMPT` with, as `model`."""
    return answer_text(sim, model, PROMPT, N_WORDS)


def error_of(reply: Reply, status: int, code: str | None) -> dict[str, Any]:
    """The OpenAI-shaped error of `reply`, checked for status, shape and code."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def last_seq(sim: SimServer) -> int:
    """The `seq` of `sim`'s latest attempt (0 before any), for `attempts(since=...)`."""
    log = sim.state.attempts()
    return int(log[-1]["seq"]) if log else 0


async def start_pair(
    sim_factory: SimFactory,
    gateway_factory: GatewayFactory,
    route: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[SimServer, SimServer, Server]:
    """Sims `p` (primary) and `b` (backup), and a gateway with route `chat: [m@p, m@b]`."""
    p = await sim_factory("p", n_words=N_WORDS)
    b = await sim_factory("b", n_words=N_WORDS)
    routes = [{"alias": "chat", "candidates": ["m@p", "m@b"], **(route or {})}]
    gw = await gateway_factory(build_config({"p": p, "b": b}, routes, **kwargs))
    return p, b, gw


# --- client keys' limits (gateway.limits) -------------------------------------------------------


def admission(ledger: Any, client: Any) -> str:
    """`ledger.admit(client)` as a word: "" admitted, else the limit that refused it."""
    from gateway.limits.ledger import Refused

    try:
        ledger.admit(client)
    except Refused as refused:
        return refused.verdict.refused
    return ""
