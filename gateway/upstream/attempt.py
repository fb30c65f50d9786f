"""One upstream attempt, up to the point where the gateway commits to an answer.

Non-streaming: the whole body is read and checked before anything is sent to the client.
Streaming: events are read and held until the first one that carries output, so a provider
that fails before its first token still fails over invisibly. The caller then relays the
rest (`gateway.upstream.relay`) or, on failure, tries the next candidate.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import msgspec
import orjson
from yarl import URL

from gateway.config.model import ProviderConfig, TargetConfig, Timeouts
from gateway.formats.translate import Splitter, Translation
from gateway.telemetry.hub import Usage
from gateway.upstream.dialect import OPENAI, Dialect
from gateway.upstream.expiry import Expiry
from gateway.upstream.pool import IdleReads, provider_message, transport_outcome
from gateway.upstream.sse import Kind, SseSplitter
from health.outcome import (
    FailureReason,
    Outcome,
    OutcomeKind,
    blamed,
    classify_status,
    provider_failure,
    stalled,
    succeeded,
)

ERROR_BODY_LIMIT = 1 << 20


class AttemptSpec(msgspec.Struct, frozen=True):
    """Everything needed to send one request to one target."""

    target: TargetConfig
    provider: ProviderConfig
    path: str  # e.g. "/chat/completions"
    body: bytes
    headers: dict[str, str]
    stream: bool
    timeouts: Timeouts  # the provider's, with the route's overrides
    deadline: float | None = None  # the whole request's (loop time), if it has one
    # Told the target id when a stream reaches its first output event: the target answered,
    # long before its attempt is released after the relay (`HealthStore.heard`).
    heard: Callable[[str], None] | None = None
    # The request crosses wire formats: its answer comes back through this (None: passed as is)
    translation: Translation | None = None
    dialect: Dialect = OPENAI  # how the client's stream reads (`gateway.upstream.dialect`)

    @property
    def url(self) -> URL:
        return _url(self.provider.base_url, self.path, tuple(self.provider.query.items()))


class Clocks(msgspec.Struct, frozen=True, gc=False):
    """An attempt's timers, computed once (loop time): the relay of a committed stream goes on
    with the same ones."""

    end: float  # the attempt's total_s or the request's deadline, the sooner
    request_deadline: float  # the caller's alone (inf if none): not the provider's fault
    idle_s: float


class Reply(msgspec.Struct, frozen=True):
    """A complete non-streaming answer or an error to pass through, read and checked."""

    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str]  # the response's own (read-only): not copied


@dataclass(slots=True)
class OpenStream:
    """A streaming response whose first output event has arrived; not yet sent to the client."""

    response: aiohttp.ClientResponse
    splitter: Splitter  # the target's events, in the client's format
    prelude: list[bytes]  # checked events up to and including the first output
    pending: list[bytes]  # events read in the same batch, after it, not yet checked
    finished: bool
    started_s: float
    ttft_s: float
    headers: dict[str, str]
    clocks: Clocks
    usage: Usage | None = None  # filled by the relay from the events it passes on
    malformed: int = 0  # malformed events the relay met: dropped, or one past the limit
    relayed: list[bytes] = field(default_factory=list)  # data events sent to the client
    dialect: Dialect = OPENAI

    def close(self) -> None:
        self.response.close()


class AttemptResult(msgspec.Struct, frozen=True):
    outcome: Outcome
    reply: Reply | None = None  # success (non-stream) or a caller error to pass through
    stream: OpenStream | None = None  # success (stream), to be relayed
    usage: Usage | None = None


def _fail(reason: FailureReason, detail: str = "") -> AttemptResult:
    return AttemptResult(provider_failure(reason, detail))


async def run_attempt(
    spec: AttemptSpec, session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop
) -> AttemptResult:
    """Send the request and read it up to the commit point (on `loop`, the running one: a
    lookup fewer). Never raises for upstream faults."""
    t = spec.timeouts
    started = loop.time()
    request_deadline = math.inf if spec.deadline is None else spec.deadline
    deadline = min(started + t.total_s, request_deadline)
    # A non-streaming answer's headers arrive only after the whole generation, which may take
    # minutes (reasoning models): it gets the attempt's whole `total_s`, not a first-token limit.
    headers_by = min(started + t.headers_s, deadline) if spec.stream else deadline
    try:
        with Expiry(loop, headers_by):
            # Never follow a provider's redirect: it would carry the prompt and the provider's
            # key to another host. A 3xx is the provider's failure (health.outcome).
            resp = await session.post(
                spec.url,
                data=spec.body,
                headers=spec.headers,
                allow_redirects=False,
                timeout=_connect_timeout(t.connect_s),  # the route's, if it sets one
            )
    except aiohttp.ClientError as exc:  # before TimeoutError: a connect timeout is both
        return AttemptResult(transport_outcome(exc))
    except TimeoutError:
        late = FailureReason.HEADERS_TIMEOUT if spec.stream else FailureReason.TOTAL_TIMEOUT
        return _blame(_fail(late), request_deadline)
    except OSError as exc:
        return AttemptResult(transport_outcome(exc))
    try:
        tr = spec.translation
        if not 200 <= resp.status < 300:
            return await _error_reply(resp, spec.provider, started, deadline, t.idle_s, tr)
        if spec.stream:
            clocks = Clocks(deadline, request_deadline, t.idle_s)
            splitter = SseSplitter() if tr is None else tr.splitter()
            first_by = started + t.first_token_s
            result = await _open_stream(
                resp, loop, started, first_by, clocks, splitter, spec.dialect
            )
            if result.stream is not None and spec.heard is not None:
                spec.heard(spec.target.id)
        else:
            result = await _read_json(resp, loop, started, deadline, t.idle_s, tr, spec.dialect)
    except BaseException:
        resp.close()
        raise
    if result.stream is None:
        resp.release()
    return _blame(result, request_deadline)


@functools.lru_cache(maxsize=256)
def _url(base_url: str, path: str, query: tuple[tuple[str, str], ...]) -> URL:
    """The target's URL, parsed once as aiohttp parses a string (it would on every request)."""
    url = base_url + path
    if not query:
        return URL(url)
    return URL(url + ("&" if "?" in path else "?") + urlencode(query))  # Gemini's ?alt=sse


@functools.lru_cache(maxsize=64)
def _connect_timeout(connect_s: float) -> aiohttp.ClientTimeout:
    """aiohttp's timer for the connect phase only; the other phases are ours."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect_s, connect=None)


def _blame(result: AttemptResult, request_deadline: float) -> AttemptResult:
    if result.outcome.kind is OutcomeKind.SUCCESS or request_deadline == math.inf:
        return result  # the usual case: nothing to blame on the caller's deadline
    now = asyncio.get_running_loop().time()
    outcome = blamed(result.outcome, now, request_deadline)
    return result if outcome is result.outcome else AttemptResult(outcome)


async def _read_body(resp: aiohttp.ClientResponse, until: float, limit: int) -> bytes:
    async with asyncio.timeout_at(until):
        return await resp.content.read(limit)


async def _error_reply(
    resp: aiohttp.ClientResponse,
    provider: ProviderConfig,
    started: float,
    deadline: float,
    idle_s: float,
    translation: Translation | None,
) -> AttemptResult:
    loop = asyncio.get_running_loop()
    try:
        body = await _read_body(resp, min(deadline, loop.time() + idle_s), ERROR_BODY_LIMIT)
    except (TimeoutError, aiohttp.ClientError, OSError):
        body = b""
    status, retry_after = resp.status, resp.headers.get("Retry-After")
    if translation is not None:  # what the format says in the body (Gemini's retryDelay...)
        status, retry_after = translation.evidence(status, retry_after, body)
    outcome = classify_status(status, retry_after=retry_after, latency_s=loop.time() - started)
    if outcome.kind is OutcomeKind.MISCONFIGURED:  # what the provider said, for operators
        said = provider_message(body, (provider.api_key, *provider.headers.values()))
        if said:
            outcome = msgspec.structs.replace(outcome, detail=f"{outcome.detail}: {said}")
    reply = None
    if outcome.kind is OutcomeKind.CALLER_ERROR:
        ctype = resp.headers.get("Content-Type", "application/json")
        if translation is not None:  # the client reads errors in its own format
            body, ctype = translation.error(resp.status, body), "application/json"
        reply = Reply(resp.status, body, ctype, resp.headers)
    return AttemptResult(outcome, reply=reply)


async def _read_all(resp: aiohttp.ClientResponse, deadline: float, idle_s: float) -> bytes:
    """The whole body; TimeoutError after `idle_s` of silence or at `deadline`."""
    content = resp.content
    if content.is_eof():  # the usual case: a small body already arrived with the headers
        return content.read_nowait(-1)
    chunks: list[bytes] = []
    async with IdleReads(content, idle_s, deadline) as reads:
        while chunk := await reads.next():
            chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(
    resp: aiohttp.ClientResponse,
    loop: asyncio.AbstractEventLoop,
    started: float,
    deadline: float,
    idle_s: float,
    translation: Translation | None,
    dialect: Dialect,
) -> AttemptResult:
    try:
        body = await _read_all(resp, deadline, idle_s)
    except TimeoutError:  # blamed on the caller's deadline by the caller, if it was that
        return AttemptResult(stalled(loop.time(), deadline, math.inf))
    except (aiohttp.ClientError, OSError) as exc:
        return AttemptResult(transport_outcome(exc))
    if translation is not None:
        translated = translation.reply(body)
        if translated is None:
            return _fail(FailureReason.MALFORMED, "response body is not an answer")
        body = translated
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _fail(FailureReason.MALFORMED, "response body is not JSON")
    if not isinstance(parsed, dict) or parsed.get("error") is not None:  # a response's: null
        return _fail(FailureReason.MALFORMED, "response body is not a result object")
    elapsed = loop.time() - started
    outcome = succeeded(resp.status, latency_s=elapsed, ttft_s=elapsed)
    ctype = resp.headers.get("Content-Type", "application/json")
    reply = Reply(resp.status, body, ctype, resp.headers)
    return AttemptResult(outcome, reply=reply, usage=dialect.reply_usage(parsed))


async def _open_stream(
    resp: aiohttp.ClientResponse,
    loop: asyncio.AbstractEventLoop,
    started: float,
    first_token_by: float,
    clocks: Clocks,
    splitter: Splitter,
    dialect: Dialect,
) -> AttemptResult:
    inspect = dialect.inspect
    ctype = resp.headers.get("Content-Type", "")
    if "text/event-stream" not in ctype:
        return _fail(FailureReason.MALFORMED, f"expected an event stream, got {ctype or 'nothing'}")
    prelude: list[bytes] = []
    try:
        with Expiry(loop, min(first_token_by, clocks.end)):
            while True:
                chunk = await resp.content.readany()
                if not chunk:
                    return _fail(FailureReason.CUT, "stream ended before any output")
                events = splitter.feed(chunk)
                for i, raw in enumerate(events):
                    info = inspect(raw)
                    if info.kind is Kind.MALFORMED:
                        return _fail(FailureReason.MALFORMED, "malformed event before first token")
                    if info.kind is Kind.ERROR:
                        return _fail(
                            FailureReason.UPSTREAM_ERROR_EVENT, "error event before output"
                        )
                    if info.kind is Kind.COMMENT:
                        continue
                    done = info.kind is Kind.DONE
                    if done and not info.content:
                        return _fail(FailureReason.CUT, "stream finished without output")
                    if not done:  # a last event that is the answer (the Responses API's,
                        prelude.append(raw)  # for an empty one) is relayed as the rest
                    if info.content:
                        ttft = loop.time() - started
                        stream = OpenStream(
                            resp,
                            splitter,
                            prelude,
                            events[i:] if done else events[i + 1 :],
                            info.finished,
                            started,
                            ttft,
                            dict(resp.headers),
                            clocks,
                            dialect=dialect,
                        )
                        return AttemptResult(succeeded(resp.status, ttft_s=ttft), stream=stream)
    except TimeoutError:
        return _fail(FailureReason.FIRST_TOKEN_TIMEOUT)
    except (aiohttp.ClientError, OSError) as exc:
        return AttemptResult(transport_outcome(exc))
