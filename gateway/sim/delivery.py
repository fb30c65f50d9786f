"""Sending a prepared answer to the client, shaped by the current fault.

Every function here writes the whole response itself (rather than returning an unsent one to
aiohttp) so that a write failure is seen while the attempt is still open and can be logged as a
client disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web

from gateway.sim.faults import Fault
from gateway.sim.formats import OPENAI_FRAMING, Framing
from gateway.sim.state import Attempt

# A non-streamed "drip" sends its body in this many pieces, interval_s apart.
DRIP_BODY_PIECES = 4
# How often a hold (hang, stall) checks that the client is still there when the server was
# not started with handler cancellation.
_DISCONNECT_POLL_S = 0.02
_OK = Fault()


async def pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def reset_connection(request: web.BaseRequest) -> None:
    """Abort the TCP connection so the peer sees a reset (RST, via SO_LINGER 0)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Not a TCP socket: a plain abort is the best we can do.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def abort_connection(request: web.BaseRequest) -> None:
    """Close the connection at once without finishing the response (no terminator)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def wait_for_client_to_leave(request: web.BaseRequest) -> None:
    """Return once the client has closed the connection. With handler cancellation enabled the
    handler is cancelled before this notices; the poll covers servers without it."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(_DISCONNECT_POLL_S)


async def send_json(
    request: web.BaseRequest,
    attempt: Attempt,
    status: int,
    body: bytes,
    headers: dict[str, str],
    fault: Fault = _OK,
    framing: Framing = OPENAI_FRAMING,
) -> web.StreamResponse:
    """Send a JSON response; a 200 is shaped by ``fault`` (slow, cut, stall, malformed, drip;
    ``framing`` holds the format's malformed body)."""
    mode = fault.mode if status == 200 else "ok"
    if mode == "slow_first_token":
        await pause(fault.delay_s)
    if mode in ("cut", "stall", "drip"):
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_type = "application/json"
        resp.content_length = len(body)
        await resp.prepare(request)
        attempt.status = status
        if mode == "drip":
            step = -(-len(body) // DRIP_BODY_PIECES)
            for i in range(0, len(body), step):
                if i:
                    await pause(fault.interval_s)
                await resp.write(body[i : i + step])
            await resp.write_eof()
            attempt.finish("completed")
            return resp
        await resp.write(body[: len(body) // 2])
        if mode == "cut":
            abort_connection(request)
            attempt.finish("cut")
            return resp
        attempt.outcome = "stalled"
        await wait_for_client_to_leave(request)
        attempt.disconnected()
        return resp
    outcome = "completed"
    if mode == "malformed":
        body, outcome = framing.malformed_body, "malformed"
    resp = web.Response(status=status, body=body, headers=headers, content_type="application/json")
    await resp.prepare(request)
    attempt.status = status
    await resp.write_eof()
    attempt.finish(outcome)
    return resp


async def send_stream(
    request: web.BaseRequest,
    attempt: Attempt,
    events: list[bytes],
    headers: dict[str, str],
    fault: Fault,
    interval_s: float,
    framing: Framing = OPENAI_FRAMING,
) -> web.StreamResponse:
    """Send ``events`` (SSE events without the terminator, ``framing.done``) as a 200 event
    stream, shaped by ``fault``; ``interval_s`` separates events unless the fault is a drip."""
    mode = fault.mode
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_type = "text/event-stream"
    resp.headers["Cache-Control"] = "no-cache"
    await resp.prepare(request)
    attempt.status = 200
    if mode == "slow_first_token":
        await pause(fault.delay_s)
    if mode == "drip":
        interval_s = fault.interval_s
    cut_short = mode in ("cut", "stall", "malformed", "error_event")
    limit = fault.after_chunks if cut_short else len(events)
    garble_at = min(fault.after_chunks, len(events)) if mode == "garbled" else -1
    for i, event in enumerate(events[:limit]):
        if i == garble_at:
            await _garble(resp, fault.times, interval_s, framing.malformed_event)
        if i:
            await pause(interval_s)
        await resp.write(event)
    if garble_at == len(events):
        await _garble(resp, fault.times, interval_s, framing.malformed_event)
    if mode == "cut":
        abort_connection(request)
        attempt.finish("cut")
        return resp
    if mode == "stall":
        attempt.outcome = "stalled"
        await wait_for_client_to_leave(request)
        attempt.disconnected()
        return resp
    if mode == "malformed":
        await pause(interval_s)
        await resp.write(framing.malformed_event)
        outcome = "malformed"
    elif mode == "error_event":
        await pause(interval_s)
        await resp.write(framing.error_event)
        outcome = "error_event"
    elif mode == "no_done":
        outcome = "no_done"
    else:
        await resp.write(framing.done)
        outcome = "garbled" if mode == "garbled" else "completed"
    await resp.write_eof()
    attempt.finish(outcome)
    return resp


async def _garble(resp: web.StreamResponse, times: int, interval_s: float, line: bytes) -> None:
    """``times`` invalid JSON events (``line``) in a row, paced like the events around them."""
    for _ in range(times):
        await pause(interval_s)
        await resp.write(line)
