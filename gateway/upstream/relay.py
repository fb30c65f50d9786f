"""Relaying a committed stream to the client, event by event, with honest endings.

After the first byte has reached the client nothing can be retried: a stall, reset, cut,
upstream error or a run of malformed events ends the stream with an in-band SSE `error` event
and no `[DONE]`, so a truncated answer is never presented as complete. A single malformed
event (up to `malformed_max` in one stream, `resilience.stream_malformed_max`) is dropped,
never sent on, and counted in `OpenStream.malformed`; the rest of the answer is relayed. A
stream that ends without `[DONE]` but after a finish reason is complete: it is finalised with
`[DONE]` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
import msgspec
from aiohttp import web

from gateway.edge.shutdown import absorb_shutdown
from gateway.upstream.attempt import OpenStream
from gateway.upstream.dialect import OPENAI_DONE as DONE
from gateway.upstream.dialect import openai_error_event as error_event
from gateway.upstream.pool import IdleReads, transport_outcome
from gateway.upstream.seam import Diverged, Seam
from gateway.upstream.sse import Kind
from health.outcome import (
    CLIENT_GONE,
    DIVERGED,
    SHUTDOWN,
    FailureReason,
    Outcome,
    provider_failure,
    stalled,
    succeeded,
)

__all__ = ["DONE", "error_event", "relay_stream"]  # an OpenAI stream's ending, for tests
TAIL_S = 0.1  # how long the end of an answered stream's body is waited for (`_keep_connection`)


class ClientGone(Exception):
    """The client closed its connection while we were writing to it."""


async def _write(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except (ConnectionError, aiohttp.ClientConnectionResetError) as exc:
        raise ClientGone from exc


class _Batch:
    """What a batch of upstream events amounts to: bytes to send, and how the stream stands."""

    __slots__ = (
        "dialect",
        "done",
        "failure",
        "finished",
        "inspect",
        "malformed_max",
        "out",
        "seam",
        "stream",
    )

    def __init__(
        self, finished: bool, stream: OpenStream, malformed_max: int, seam: Seam | None = None
    ) -> None:
        self.stream = stream
        self.out: list[bytes] = []
        self.done = False
        self.failure: Outcome | None = None
        self.finished = finished
        self.malformed_max = malformed_max
        self.seam = seam
        self.dialect = stream.dialect
        self.inspect = stream.dialect.inspect  # read once: it classifies every event

    def consume(self, raws: list[bytes]) -> None:
        inspect, stream, out = self.inspect, self.stream, self.out
        for raw in raws:
            info = inspect(raw)
            kind = info.kind
            if kind is Kind.DATA:  # by far the most: first
                payload = info.payload
                if self.seam is not None:  # a continuation: only what the client lacks
                    try:
                        rewritten = self.seam.rewrite(payload)
                    except Diverged as exc:
                        self.failure = msgspec.structs.replace(DIVERGED, detail=str(exc))
                        return
                    if rewritten is None:
                        continue
                    raw = rewritten
                if info.finished:
                    self.finished = True
                if stream.usage is None or payload.get("usage"):
                    stream.usage = self.dialect.usage(payload, stream.usage)
                out.append(raw)
                out.append(b"\n\n")
                stream.relayed.append(raw)
            elif kind is Kind.DONE:  # relayed as sent; a Responses one holds the usage
                if info.payload is not None:
                    stream.usage = self.dialect.usage(info.payload, stream.usage)
                out.append(raw)
                out.append(b"\n\n")
                self.done = True
                return
            elif kind is Kind.MALFORMED:
                # Dropped: its bytes may be half an answer, not something to show or log.
                stream.malformed += 1
                if stream.malformed > self.malformed_max:
                    self.failure = provider_failure(
                        FailureReason.MALFORMED, _too_many(stream.malformed)
                    )
                    return
            elif kind is Kind.ERROR:
                self.failure = provider_failure(FailureReason.UPSTREAM_ERROR_EVENT)
                return

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data


def _too_many(malformed: int) -> str:
    return "malformed event" if malformed == 1 else f"{malformed} malformed events"


async def relay_stream(
    stream: OpenStream,
    response: web.StreamResponse,
    *,
    malformed_max: int,
    seam: Seam | None = None,
) -> Outcome:
    """Relay the rest of `stream`, on the attempt's own timers (`stream.clocks`); return the
    attempt's final outcome (the client may be gone). Up to `malformed_max` malformed events
    are dropped (counted in `stream.malformed`); one more is a provider failure. A failure is
    returned, not written: the caller continues the answer elsewhere or ends the stream with
    `end_with_error`. `seam`: this stream continues an earlier one (`gateway.upstream.seam`).
    Every data event sent is kept in `stream.relayed`."""
    loop = asyncio.get_running_loop()
    batch = _Batch(stream.finished, stream, malformed_max, seam)
    if seam is None:
        batch.out.extend(raw + b"\n\n" for raw in stream.prelude)
        stream.relayed.extend(stream.prelude)
        if stream.dialect.prelude_usage:
            _prelude_usage(stream)
    else:
        batch.consume(stream.prelude)
    batch.consume(stream.pending)  # events that came in the same read as the first token
    try:
        await _write(response, batch.take())
        if batch.done:
            await _keep_connection(stream)
            return _success(stream, loop.time())
        clocks = stream.clocks
        try:
            async with IdleReads(stream.response.content, clocks.idle_s, clocks.end) as reads:
                while batch.failure is None:
                    chunk = await reads.next()
                    if not chunk:
                        break
                    batch.consume(stream.splitter.feed(chunk))
                    data = batch.take()
                    if data:
                        await _write(response, data)
                    if batch.done:
                        await _keep_connection(stream)
                        return _success(stream, loop.time())
        except TimeoutError:
            batch.failure = stalled(loop.time(), clocks.end, clocks.request_deadline)
    except ClientGone:
        return CLIENT_GONE
    except (aiohttp.ClientError, OSError) as exc:
        batch.failure = transport_outcome(exc)
    except asyncio.CancelledError as exc:
        if not absorb_shutdown(exc):
            raise
        # The drain's grace is over: end the stream honestly, not silently.
        with contextlib.suppress(ClientGone):
            message = "The gateway is shutting down; the answer is incomplete."
            await _write(response, ending(stream)(message, "shutting_down"))
        return SHUTDOWN
    failure = batch.failure
    if failure is None:
        # The upstream closed the stream without [DONE]: a translation's encoder ends the
        # client's stream itself, if the model had finished.
        batch.consume(stream.splitter.end())
        if batch.done:
            try:
                await _write(response, batch.take())
            except ClientGone:
                return CLIENT_GONE
            return _success(stream, loop.time())
        if batch.finished:
            try:
                await _write(response, stream.dialect.done)
            except ClientGone:
                return CLIENT_GONE
            return _success(stream, loop.time())
        failure = provider_failure(FailureReason.CUT, "stream ended before a finish reason")
    return failure


def ending(stream: OpenStream) -> Callable[[str, str], bytes]:
    """How `stream`'s client is told its answer failed, (message, code) -> the event: by the
    translation's encoder where it has its own (a Responses stream's `response.failed`
    carries the response so far), else by the client's dialect."""

    def said(message: str, code: str) -> bytes:
        event = stream.splitter.failed(message, code)
        return stream.dialect.error_event(message, code) if event is None else event

    return said


async def end_with_error(
    response: web.StreamResponse, failure: Outcome, stream: OpenStream | None = None
) -> None:
    """End a stream whose answer is incomplete with an in-band error naming why (no [DONE]),
    as `stream`'s client reads it (`ending`; OpenAI's without a stream)."""
    with contextlib.suppress(ClientGone):
        await _write(
            response, _error_of(failure, error_event if stream is None else ending(stream))
        )


async def _keep_connection(stream: OpenStream) -> None:
    """The answer is complete: read what is left of the body - a chunked stream's closing
    empty chunk, right behind the last event - so that the connection goes back to the
    provider's pool when the stream is closed. Before, about half of all streams ended with
    the terminator not yet read and their connection was closed: the next stream paid a new
    connect (a TLS handshake, to a real provider). A body that does not end within `TAIL_S`
    is left, and its connection closed, as before."""
    content = stream.response.content
    if content.is_eof():
        return
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
        async with asyncio.timeout(TAIL_S):
            while await content.readany():
                pass


def _success(stream: OpenStream, now: float) -> Outcome:
    return succeeded(stream.response.status, latency_s=now - stream.started_s, ttft_s=stream.ttft_s)


def _prelude_usage(stream: OpenStream) -> None:
    """The usage the preamble carried (Anthropic's `message_start`): relayed unread."""
    for raw in stream.prelude:
        info = stream.dialect.inspect(raw)
        if info.kind is Kind.DATA:
            stream.usage = stream.dialect.usage(info.payload, stream.usage)


def _error_of(failure: Outcome, error_event: Callable[[str, str], bytes]) -> bytes:
    if failure.reason is FailureReason.DEADLINE:
        return error_event(
            "The request deadline ran out after output had started; the answer is incomplete.",
            "deadline_exceeded",
        )
    return error_event(
        f"The upstream stream failed after output had started ({failure.summary}); "
        "the answer is incomplete.",
        f"upstream_{failure.reason.value}",
    )
