"""The rig of one scenario: two sims (`p`, the primary, and `b`, the backup) and a gateway with
route `chat: [m@p, m@b]`, all in this process on loopback; an aiohttp client; what the caller
got (`Answer`, with the SSE body read the way a client reads it).

Every server is closed when the rig's `async with` block ends, on errors too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from gateway.config import Config, load_data
from gateway.edge.app import build_app
from gateway.edge.server import Server
from gateway.sim import Fault, SimServer
from gateway.sim.answers import answer_text
from ops.bench.net import LOOPBACK, free_port

CHAT = "/v1/chat/completions"
ALIAS = "chat"
MODEL = "m"
PROMPT = "what does a turnout do"
N_WORDS = 24
VOICE = "model-x"  # the voice two replicas of one model share (a regenerated answer splices)

# Scaled down: every phase limit is ~0.5 s, a breaker opens for 0.5 s, the ramp is 2 s, hang
# detection needs 0.2 s of silence.
TIMEOUTS: dict[str, float] = {
    "connect_s": 0.5,
    "headers_s": 0.5,
    "first_token_s": 0.75,
    "idle_s": 0.5,
    "total_s": 5.0,
}
BREAKER: dict[str, Any] = {"open_s": 0.5, "slow_start_s": 2.0}
# Hang detection scaled with the timeouts: 0.2 s of silence (below the 0.5 s limits) sets a
# target aside, as the default 1 s does below real timeouts of 10-30 s.
HANG: dict[str, Any] = {"floor_s": 0.2}
CLIENT_TIMEOUT_S = 15.0  # one request, at most: a hang here is a finding, not a wait


def full_answer(voice: str) -> str:
    """The whole answer a sim of `voice` gives `PROMPT` (what a complete stream must carry)."""
    return answer_text(voice, MODEL, PROMPT, N_WORDS)


@dataclass(frozen=True)
class SimSpec:
    """How one sim of the rig answers; `closed=True`: no sim, a port nobody listens on."""

    voice: str = ""
    prefill: str = "ignore"
    chunk_interval_ms: float = 0.0
    supports: tuple[str, ...] = ()
    closed: bool = False


def gateway_config(urls: dict[str, str], specs: dict[str, SimSpec]) -> Config:
    """One provider per sim (named like it), target `m@<name>`, route `chat: [m@p, m@b]`;
    Turnout's defaults except the scaled-down timeouts and breaker times."""
    data: dict[str, Any] = {
        "server": {"host": LOOPBACK, "port": 0},
        "providers": {
            name: {"base_url": url, "api_key": f"key-{name}", "timeouts": TIMEOUTS}
            for name, url in urls.items()
        },
        "targets": {
            f"{MODEL}@{name}": {"provider": name, "model": MODEL, "supports": list(spec.supports)}
            for name, spec in specs.items()
        },
        "routes": [{"alias": ALIAS, "candidates": [f"{MODEL}@{name}" for name in urls]}],
        "health": {"breaker": BREAKER, "hang": HANG},
    }
    return load_data(data, env={})


@dataclass
class Answer:
    """What the caller got for one request."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    stream: bool
    started: float  # time.monotonic() just before sending
    elapsed_s: float
    error: str = ""  # a client-side failure (timeout, connection), empty when there was none
    events: list[tuple[str | None, str]] = field(default_factory=list)

    @property
    def ms(self) -> float:
        return self.elapsed_s * 1000

    @property
    def target(self) -> str:
        return self.headers.get("x-turnout-target", "")

    @property
    def attempts(self) -> str:
        return self.headers.get("x-turnout-attempts", "")

    @property
    def done_count(self) -> int:
        return sum(1 for e in self.events if e == (None, "[DONE]"))

    def error_code(self) -> str:
        """The OpenAI error code: of the JSON body, or of an in-band SSE `error` event."""
        if self.stream and self.status == 200:
            for name, data in self.events:
                if name == "error":
                    return str(_json_field(data, "error", "code") or "error")
            return ""
        if self.status != 200:
            return str(_json_field(self.body.decode(errors="replace"), "error", "code") or "")
        return ""

    def complete(self) -> bool:
        """A whole answer: a 200 JSON completion, or one stream (one id) ending with one [DONE]
        and no error event."""
        if self.status != 200 or self.error:
            return False
        if not self.stream:
            return bool(self.text())
        if not self.events or self.events[-1] != (None, "[DONE]") or self.done_count != 1:
            return False
        if any(name is not None for name, _ in self.events):
            return False
        ids = {_json_field(d, "id") for _, d in self.events[:-1]}
        return len(ids) == 1

    def text(self) -> str:
        """The answer's text as far as the caller got it."""
        if self.status != 200:
            return ""
        if not self.stream:
            try:
                doc = orjson.loads(self.body)
                return str(doc["choices"][0]["message"]["content"] or "")
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                return ""
        parts: list[str] = []
        for name, data in self.events:
            if name is not None or data == "[DONE]":
                continue
            try:
                choices = orjson.loads(data).get("choices") or []
            except (orjson.JSONDecodeError, AttributeError):
                continue
            for choice in choices:
                parts.append(str((choice.get("delta") or {}).get("content") or ""))
        return "".join(parts)

    def got(self) -> str:
        """One phrase for the table: `200 json`, `200 complete`, `200 error upstream_cut`..."""
        if self.error:
            return f"client {self.error}"
        if self.status != 200:
            return f"{self.status} {self.error_code()}".strip()
        if not self.stream:
            return "200 json" if self.complete() else "200 json (no answer)"
        if self.complete():
            return "200 complete, 1 [DONE]"
        code = self.error_code()
        if code:
            done = f", {self.done_count} [DONE]" if self.done_count else ", no [DONE]"
            return f"200 error {code}{done}"
        return f"200 incomplete ({self.done_count} [DONE])"


def _json_field(text: str, *keys: str) -> Any:
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for every event of an SSE body: a client's parser, not the gateway's."""
    out: list[tuple[str | None, str]] = []
    for block in body.decode(errors="replace").replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
        out.append((name, "\n".join(data)))
    return out


class Rig:
    """Sims `p` and `b` (or a closed port for a `closed` spec), a gateway, a client session."""

    def __init__(self, specs: dict[str, SimSpec]) -> None:
        self.specs = specs
        self.sims: dict[str, SimServer] = {}
        self.gateway: Server | None = None
        self.http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    def sim(self, name: str) -> SimServer:
        return self.sims[name]

    def set_fault(self, name: str, spec: dict[str, Any]) -> None:
        self.sims[name].state.set_fault(Fault.from_json(spec))

    def log(self, name: str, since: float = 0.0) -> list[dict[str, Any]]:
        """The attempts sim `name` saw (none for a closed port), those started after `since`."""
        sim = self.sims.get(name)
        if sim is None:
            return []
        return [a for a in sim.state.attempts() if a["t_start"] >= since]

    async def post(self, *, stream: bool, headers: dict[str, str] | None = None) -> Answer:
        assert self.http is not None
        body: dict[str, Any] = {
            "model": ALIAS,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": stream,
        }
        started = time.monotonic()
        try:
            async with self.http.post(self.url + CHAT, json=body, headers=headers or {}) as resp:
                raw = await resp.read()
                status, hdrs = resp.status, {k.lower(): v for k, v in resp.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(
                0, {}, b"", stream, started, time.monotonic() - started, type(exc).__name__
            )
        elapsed = time.monotonic() - started
        streamed = stream and hdrs.get("content-type", "").startswith("text/event-stream")
        answer = Answer(status, hdrs, raw, stream, started, elapsed)
        if streamed:
            answer.events = sse_events(raw)
        return answer

    async def breaker_events(self) -> list[dict[str, Any]]:
        """The gateway's breaker transitions so far, oldest first, with `mono` (this process's
        time.monotonic()) next to the wall-clock `at`."""
        assert self.http is not None
        async with self.http.get(self.url + "/admin/events", params={"limit": "10000"}) as resp:
            doc = await resp.json()
        offset = time.time() - time.monotonic()
        out = [
            {**e, "mono": float(e["at"]) - offset}
            for e in doc.get("data", [])
            if e.get("kind") == "breaker"
        ]
        return sorted(out, key=lambda e: (e["at"], e["seq"]))


@contextlib.asynccontextmanager
async def rig(specs: dict[str, SimSpec]) -> AsyncIterator[Rig]:
    """Start the sims and the gateway; close every one of them on the way out."""
    r = Rig(specs)
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for name, spec in specs.items():
            if spec.closed:
                urls[name] = f"http://{LOOPBACK}:{free_port()}/v1"
                continue
            sim = SimServer(
                name,
                n_words=N_WORDS,
                voice=spec.voice,
                prefill=spec.prefill,
                chunk_interval_ms=spec.chunk_interval_ms,
            )
            await sim.start(LOOPBACK, 0)
            stack.push_async_callback(sim.close)
            r.sims[name] = sim
            urls[name] = sim.base_url
        gateway = Server(build_app(gateway_config(urls, specs)), LOOPBACK, 0, grace_s=0.5)
        await gateway.start()
        stack.push_async_callback(gateway.stop)
        r.gateway = gateway
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        r.http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        yield r
