"""Settings, the current fault and the attempt log of one simulated provider."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.sim.faults import Fault

DEFAULT_MODELS: tuple[str, ...] = ("sim-small", "sim-large")
LOG_LIMIT = 10_000  # attempts kept in the log at most
LOG_BYTES_LIMIT = 16 * 1024 * 1024  # request-body bytes kept in the log at most, in total
BODY_CAP_BYTES = 64 * 1024  # a larger request body is logged as a summary (see summarise_body)
_SUMMARY_FIELDS = 32  # top-level fields a summary shows at most
_SUMMARY_STR_CHARS = 200  # a longer string field is shown as "<str N chars>"
# Request headers the log keeps (plus every header starting with "x-").
_LOGGED_HEADERS = frozenset(
    {
        "authorization",
        "api-key",
        "anthropic-version",
        "anthropic-beta",
        "x-goog-api-key",
        "baggage",  # so tests can see it is not forwarded
        "cookie",
        "traceparent",
        "tracestate",
        "user-agent",
    }
)


PREFILL_MODES = ("ignore", "continue", "reject")
FORMATS = ("openai", "anthropic", "gemini")
TOOL_MODES = ("ignore", "call")


@dataclass(frozen=True)
class SimSettings:
    """How the sim answers when no fault interferes."""

    name: str = "sim"
    latency_ms: float = 0.0  # before response headers
    chunk_interval_ms: float = 0.0  # between streamed events
    n_words: int = 12  # hashed words per answer (plus the "[name]" prefix and the final ".")
    models: tuple[str, ...] = DEFAULT_MODELS  # listed by /v1/models; any model is accepted
    # When set, requests need "Authorization: Bearer <api_key>" (openai),
    # "x-api-key: <api_key>" (anthropic) or "x-goog-api-key: <api_key>" (gemini).
    api_key: str | None = None
    embedding_dims: int = 8  # overridable per request with "dimensions"
    # Who the answer says it is ("[voice] ..."; default: the name): two sims with one voice
    # answer alike, as two providers of the same model would (a continuation can be spliced).
    voice: str = ""
    # A chat request that ends with an assistant message (prefill): "ignore" it and answer
    # from scratch (as OpenAI does), "continue" it (the rest of the answer, if it is a prefix),
    # or "reject" it with a 400 (as providers without prefill support do).
    prefill: str = "ignore"
    # The wire format served: "openai" (/v1/chat/completions, /v1/completions, /v1/embeddings,
    # /v1/models), "anthropic" (the Messages API: /v1/messages, /v1/models) or "gemini"
    # (/v1beta/models/{model}:generateContent and :streamGenerateContent, /v1beta/models).
    format: str = "openai"
    # A request that offers tools: "ignore" them and answer with text, or "call" one (the
    # forced tool, else the first) with {"query": <the prompt>} (see gateway.sim.tools).
    tools: str = "ignore"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        if self.tools not in TOOL_MODES:
            raise ValueError(f"tools must be one of {', '.join(TOOL_MODES)}")
        if self.prefill not in PREFILL_MODES:
            raise ValueError(f"prefill must be one of {', '.join(PREFILL_MODES)}")
        if self.latency_ms < 0 or self.chunk_interval_ms < 0:
            raise ValueError("latency_ms and chunk_interval_ms must be >= 0")
        if self.n_words < 0:
            raise ValueError("n_words must be >= 0")
        if self.embedding_dims < 1:
            raise ValueError("embedding_dims must be >= 1")


@dataclass
class Attempt:
    """One request the sim saw. ``outcome`` is "running" until the attempt ends, then one of
    completed, client_disconnected, server_closed, hang, reset, cut, stalled, malformed,
    garbled (the complete stream, with invalid lines in it), no_done, error_event."""

    seq: int
    t_start: float
    path: str
    model: str | None
    stream: bool
    fault: str
    headers: dict[str, str]
    request_body: Any
    t_end: float | None = None
    status: int | None = None
    outcome: str = "running"
    query: str = ""  # the request's query string, if any
    client_disconnected: bool = False
    body_bytes: int = 0  # what ``request_body`` counts against the log's byte limit

    def finish(self, outcome: str | None = None) -> None:
        """End the attempt (once); ``outcome`` replaces a still "running" outcome."""
        if self.t_end is not None:
            return
        if outcome is not None and self.outcome == "running":
            self.outcome = outcome
        self.t_end = time.monotonic()

    def disconnected(self) -> None:
        """The client closed the connection before the sim was done."""
        self.client_disconnected = True
        self.finish("client_disconnected")

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "path": self.path,
            "query": self.query,
            "model": self.model,
            "stream": self.stream,
            "fault": self.fault,
            "status": self.status,
            "outcome": self.outcome,
            "client_disconnected": self.client_disconnected,
            "headers": self.headers,
            "request_body": self.request_body,
        }


def logged_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers that matter to gateway tests, with lower-case names."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _LOGGED_HEADERS or lower.startswith("x-"):
            out[lower] = value
    return out


def summarise_body(body: Any, size: int) -> dict[str, Any]:
    """What the log keeps of a request body over ``BODY_CAP_BYTES``: its size and, for a JSON
    object, its first top-level fields with long or nested values replaced by their type."""
    summary: dict[str, Any] = {"truncated": True, "bytes": size}
    if isinstance(body, dict):
        fields: dict[str, Any] = {}
        for key, value in itertools.islice(body.items(), _SUMMARY_FIELDS):
            short = isinstance(value, str) and len(value) <= _SUMMARY_STR_CHARS
            if short or value is None or isinstance(value, bool | int | float):
                fields[str(key)] = value
            elif isinstance(value, str):
                fields[str(key)] = f"<str {len(value)} chars>"
            elif isinstance(value, list):
                fields[str(key)] = f"<list of {len(value)}>"
            else:
                fields[str(key)] = f"<{type(value).__name__}>"
        summary["fields"] = fields
    return summary


def _encoded_size(body: Any) -> int:
    try:
        return len(orjson.dumps(body))
    except TypeError:
        return len(repr(body))


@dataclass
class SimState:
    """Mutable state shared by the handlers of one sim; tests may change it in-process."""

    settings: SimSettings = field(default_factory=SimSettings)
    fault: Fault = field(default_factory=Fault)
    log_limit: int = LOG_LIMIT
    log_bytes_limit: int = LOG_BYTES_LIMIT
    body_cap: int = BODY_CAP_BYTES
    log: deque[Attempt] = field(init=False)
    closing: bool = field(default=False, init=False)
    _log_bytes: int = field(default=0, init=False)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False)
    _in_flight: set[asyncio.Task[Any]] = field(default_factory=set, init=False)
    _fault_until: float | None = field(default=None, init=False)  # monotonic, from for_s

    def __post_init__(self) -> None:
        if self.log_limit < 1 or self.log_bytes_limit < 0 or self.body_cap < 0:
            raise ValueError("log_limit must be >= 1, log_bytes_limit and body_cap >= 0")
        self.log = deque()
        self.set_fault(self.fault)  # a for_s starts now

    def set_fault(self, fault: Fault) -> None:
        self.fault = fault
        self._fault_until = None if fault.for_s is None else time.monotonic() + fault.for_s

    def take_fault(self) -> Fault:
        """The fault for one new request; counts it against ``fault.count``, and ends it once
        ``fault.for_s`` has passed."""
        if self._fault_until is not None and time.monotonic() >= self._fault_until:
            self.set_fault(Fault())
        fault = self.fault
        self.fault = fault.consumed()
        return fault

    def begin(
        self,
        *,
        path: str,
        model: str | None,
        stream: bool,
        fault: str,
        headers: Mapping[str, str],
        request_body: Any,
        body_size: int | None = None,
        query: str = "",
    ) -> Attempt:
        """Log a new attempt. ``body_size`` is the request body's size on the wire (measured
        from ``request_body`` when not given); a body over ``body_cap`` bytes is logged as a
        summary, and the oldest attempts leave the log once it holds more than ``log_limit``
        attempts or ``log_bytes_limit`` bytes of request bodies (the newest always stays)."""
        if request_body is None:
            size = 0
        else:
            size = _encoded_size(request_body) if body_size is None else body_size
        if size > self.body_cap:
            request_body = summarise_body(request_body, size)
            size = _encoded_size(request_body)
        attempt = Attempt(
            seq=next(self._seq),
            t_start=time.monotonic(),
            path=path,
            model=model,
            stream=stream,
            fault=fault,
            headers=logged_headers(headers),
            request_body=request_body,
            query=query,
            body_bytes=size,
        )
        self.log.append(attempt)
        self._log_bytes += size
        while len(self.log) > 1 and (
            len(self.log) > self.log_limit or self._log_bytes > self.log_bytes_limit
        ):
            self._log_bytes -= self.log.popleft().body_bytes
        return attempt

    def attempts(self, since: int = 0) -> list[dict[str, Any]]:
        """The log as JSON objects, oldest first, only those with ``seq > since``."""
        return [a.to_json() for a in self.log if a.seq > since]

    def log_bytes(self) -> int:
        """Request-body bytes the log holds now (what ``log_bytes_limit`` bounds)."""
        return self._log_bytes

    def clear_log(self) -> None:
        self.log.clear()
        self._log_bytes = 0

    def track(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.add(task)

    def untrack(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)

    def cancel_in_flight(self) -> None:
        """Mark the sim closing and cancel every running handler (e.g. hung requests)."""
        self.closing = True
        for task in list(self._in_flight):
            task.cancel()
