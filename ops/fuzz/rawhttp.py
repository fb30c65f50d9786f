"""Raw HTTP over asyncio streams: write the bytes, read whatever comes back, parse it.

A connection ends in one of: every awaited answer parsed (ok); the server closed (closed);
bytes that are not HTTP (malformed); or silence — no answer and no close even after we
half-closed our side and waited the full bound (hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import time
from dataclasses import dataclass, field

from .types import ABORTED, CLIENT_ERROR, CLOSED, HANG, MALFORMED, OK, Answer, RawSpec, Reply

STATUS_LINE = re.compile(rb"^HTTP/\d\.\d (\d{3})(?: [^\r\n]*)?$")  # aiohttp answers 0.9 as 0.9
SETTLE_S = 1.5  # silence after which an unanswered request is half-closed


@dataclass(slots=True)
class Parsed:
    replies: list[Reply] = field(default_factory=list)
    error: str | None = None  # the bytes are not an HTTP response
    partial: bool = False  # a reply has started but is not complete


def _chunked(buf: bytes, pos: int) -> tuple[bytes, int] | str | None:
    """Decode a chunked body at `pos`: (body, end), an error, or None if incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = buf[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return f"bad chunk size {size_text[:20]!r}"
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers (usually none) end with CRLF CRLF
            return None if end < 0 else (bytes(out), end + 4)
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


def parse(buf: bytes, eof: bool, want: int) -> Parsed:
    """Up to `want` final (non-1xx) answers from the start of `buf`."""
    got = Parsed()
    pos = 0
    while len(got.replies) < want and pos < len(buf):
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            got.partial = True
            if eof or not buf.startswith(b"HTTP/"[: len(buf) - pos], pos):
                got.error = f"no header block end: {buf[pos : pos + 60]!r}"
            return got
        lines = buf[pos:end].split(b"\r\n")
        m = STATUS_LINE.match(lines[0])
        if m is None:
            got.error = f"bad status line {lines[0][:60]!r}"
            return got
        status = int(m.group(1))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                got.error = f"bad header line {line[:60]!r}"
                return got
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
        pos = end + 4
        if 100 <= status < 200:
            continue  # 100 Continue: an interim answer
        body = b""
        if status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            res = _chunked(buf, pos)
            if isinstance(res, str):
                got.error = res
                return got
            if res is None:
                got.partial = True
                return got
            body, pos = res
        elif "content-length" in headers:
            try:
                n = int(headers["content-length"])
            except ValueError:
                got.error = f"bad Content-Length {headers['content-length'][:20]!r}"
                return got
            if len(buf) < pos + n:
                got.partial = True
                return got
            body, pos = buf[pos : pos + n], pos + n
        else:  # delimited by the close
            if not eof:
                got.partial = True
                return got
            body, pos = buf[pos:], len(buf)
        got.replies.append(Reply(status, headers, body))
    return got


async def send_raw(host: str, port: int, spec: RawSpec, timeout_s: float) -> Answer:
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError) as exc:
        return Answer(CLIENT_ERROR, detail=f"connect: {exc!r}")
    buf = b""
    eof = half_closed = False
    note = ""
    try:
        for chunk in spec.chunks:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), timeout_s)
        if spec.half_close:
            writer.write_eof()
            half_closed = True
    except (ConnectionError, TimeoutError) as exc:
        note = f"write stopped: {type(exc).__name__}; "
    try:
        if spec.abort_s is not None:
            return await _abort(reader, writer, spec, started)
        while True:
            got = parse(buf, eof, spec.expect)
            if got.error is not None:
                return _answer(MALFORMED, got, note + got.error, started)
            if len(got.replies) >= spec.expect:
                return _answer(OK, got, note, started)
            if eof:
                why = "closed mid-answer" if got.partial else "closed"
                return _answer(CLOSED, got, note + why, started)
            left = deadline - time.monotonic()
            if left <= 0:
                return _answer(
                    HANG, got, note + f"silent {timeout_s:.0f}s after half-close", started
                )
            wait = left if half_closed else min(SETTLE_S, left)
            try:
                data = await asyncio.wait_for(reader.read(65536), wait)
            except TimeoutError:
                if not half_closed:
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
                    half_closed = True
                continue
            except ConnectionError:
                data = b""
            if data:
                buf += data
            else:
                eof = True
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def _abort(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spec: RawSpec, started: float
) -> Answer:
    """Read until `abort_on` shows up or `abort_s` passes, then leave (FIN or RST)."""
    assert spec.abort_s is not None
    buf = b""
    until = started + spec.abort_s
    while (left := until - time.monotonic()) > 0 and not (spec.abort_on and spec.abort_on in buf):
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except (TimeoutError, ConnectionError):
            break
        if not data:
            break
        buf += data
    if spec.reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return Answer(
        ABORTED, detail=f"left after {len(buf)} bytes", seconds=time.monotonic() - started
    )


def _answer(outcome: str, got: Parsed, detail: str, started: float) -> Answer:
    return Answer(outcome, tuple(got.replies), detail.strip("; "), time.monotonic() - started)
