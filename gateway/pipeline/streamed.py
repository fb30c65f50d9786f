"""Answering with a committed stream: the client's response, the relay of each upstream stream
into it, the continuation when one fails, and the honest end when nothing completes it.

    prepare the response (the first target's headers) -> relay_one (settle, keep what was sent)
    -> a provider failure: continue_stream (gateway.pipeline.continuation; OpenAI clients')
    -> still incomplete: one in-band error naming the first failure, no [DONE]
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.edge.headers import client_headers
from gateway.pipeline.continuation import continue_stream
from gateway.pipeline.settle import Attempted
from gateway.telemetry.logs import RateLimitedLog
from gateway.upstream.relay import end_with_error, relay_stream
from gateway.upstream.seam import Seam
from health.outcome import CLIENT_GONE, UNHEARD, Outcome, OutcomeKind

if TYPE_CHECKING:
    from gateway.pipeline.exchange import Exchange

log = logging.getLogger("turnout.exchange")
# Keyed by target id (the config's vocabulary): a provider that garbles every stream costs a
# few lines a minute, not one per request.
_malformed_log = RateLimitedLog(log)


class _StreamAnswer(web.StreamResponse):
    """Its headers go out with the first events, in one write (aiohttp's own switch, the one
    `web.Response` sets): a StreamResponse sends them alone at `prepare`, which put a second
    syscall between the first token's arrival and its relay."""

    _send_headers_immediately = False


async def answer_with_stream(ex: Exchange, att: Attempted) -> web.StreamResponse:
    stream = att.result.stream
    assert stream is not None
    response = _StreamAnswer(
        status=stream.response.status,
        headers={
            **client_headers(stream.headers),
            **ex.answer_headers(att.permit.target_id),
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )
    try:
        await response.prepare(ex.request)
    except ConnectionError:
        stream.close()
        ex.settle(att, CLIENT_GONE)
        return response
    final = await relay_one(ex, att, response)
    if final.kind is OutcomeKind.PROVIDER_FAILURE and stream.dialect.continuable:
        final = await continue_stream(ex, response, att.permit.target_id, final)
    try:
        if final.reason not in UNHEARD:
            if final.kind is not OutcomeKind.SUCCESS:  # the answer is incomplete
                await end_with_error(response, final, stream)
            await response.write_eof()
    except ConnectionError:
        pass  # the client left as the stream ended: nothing more to tell it
    return response


async def relay_one(
    ex: Exchange, att: Attempted, response: web.StreamResponse, seam: Seam | None = None
) -> Outcome:
    """Relay one committed stream into `response` (a continuation's through `seam`), settle
    its attempt and return its outcome; its events join `ex.sent`."""
    stream = att.result.stream
    assert stream is not None
    tid = att.permit.target_id
    final = CLIENT_GONE
    try:
        final = await relay_stream(
            stream, response, malformed_max=ex.config.resilience.stream_malformed_max, seam=seam
        )
    except ConnectionError:
        final = CLIENT_GONE
    finally:
        stream.close()
        ex.sent.extend(stream.relayed)
        if stream.malformed:  # before the settlement ends the span
            _malformed(ex, att, stream.malformed)
        ex.settle(att, final)
        if final.kind is OutcomeKind.PROVIDER_FAILURE:
            log.warning(
                "stream from %s failed after the first byte: %s (request %s)",
                tid,
                final.summary,
                ex.request_id,
            )
    return final


def _malformed(ex: Exchange, att: Attempted, count: int) -> None:
    """A committed stream met malformed events: count them, note them on the attempt's span,
    and say so in one rate-limited line (never their bytes: they may be content)."""
    tid = att.permit.target_id
    limit = ex.config.resilience.stream_malformed_max
    ex.rt.telemetry.malformed_events(att.span, tid, count, limit)
    _malformed_log.warning(
        tid,
        "stream from %s had %d malformed event(s) after the first byte; up to %d are "
        "dropped (request %s)",
        tid,
        count,
        limit,
        ex.request_id,
    )
