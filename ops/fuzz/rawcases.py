"""Raw-socket protocol cases: what aiohttp's client would never send.

Each builder returns the bytes for one connection and how many answers to await. A case
whose request is unfinished by design (truncated body, missing last chunk) half-closes the
connection at once; the others half-close only if the server stays silent for a while.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .types import RawSpec

CRLF = b"\r\n"
CHAT = b"/v1/chat/completions"

Builder = Callable[[random.Random, bytes, bytes], RawSpec]


def chat_json(model: bytes, content: bytes = b"hi") -> bytes:
    return b'{"model":"' + model + b'","messages":[{"role":"user","content":"' + content + b'"}]}'


def request(
    head: bytes,
    headers: list[bytes],
    body: bytes = b"",
    *,
    eol: bytes = CRLF,
) -> bytes:
    return head + eol + b"".join(h + eol for h in headers) + eol + body


def base_headers(auth: bytes) -> list[bytes]:
    return [b"Host: 127.0.0.1", b"Authorization: Bearer " + auth, b"Content-Type: application/json"]


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def valid(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    body = chat_json(model)
    extra = [b"Content-Length: %d" % len(body)]
    return RawSpec((request(b"POST " + CHAT + b" HTTP/1.1", base_headers(auth) + extra, body),))


def cl_te(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    body = chunked(chat_json(model))
    both = [b"Content-Length: %d" % rng.choice((len(body), 5, 0)), b"Transfer-Encoding: chunked"]
    if rng.random() < 0.5:
        both.reverse()
    return RawSpec((request(b"POST " + CHAT + b" HTTP/1.1", base_headers(auth) + both, body),))


def content_length(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    body = chat_json(model)
    n = len(body)
    value = rng.choice(
        (
            [b"Content-Length: %d" % n, b"Content-Length: %d" % (n + 1)],
            [b"Content-Length: abc"],
            [b"Content-Length: -1"],
            [b"Content-Length: +%d" % n],
            [b"Content-Length: %d, %d" % (n, n)],
            [b"Content-Length: 99999999999999999999999"],
            [b"Content-Length : %d" % n],
            [b"Content-Length: 0x%x" % n],
        )
    )
    return RawSpec((request(b"POST " + CHAT + b" HTTP/1.1", base_headers(auth) + value, body),))


def transfer_encoding(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    value = rng.choice(
        (b"chunked, chunked", b"gzip, chunked", b"identity", b"Chunked", b"chunked ", b"xchunked",
         b"chunked, identity", b"\tchunked")
    )  # fmt: skip
    hdrs = [*base_headers(auth), b"Transfer-Encoding: " + value]
    return RawSpec(
        (request(b"POST " + CHAT + b" HTTP/1.1", hdrs, chunked(chat_json(model))),),
    )


def bad_chunks(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    body = chat_json(model)
    kind = rng.choice(range(8))
    data = [
        b"zz\r\n" + body + b"\r\n0\r\n\r\n",
        b"-1\r\n" + body + b"\r\n0\r\n\r\n",
        b"ffffffffffffffffffff\r\n" + body + b"\r\n0\r\n\r\n",
        b"%x;ext=\x01\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        b"%x\r\n%sXX0\r\n\r\n" % (len(body), body),  # no CRLF after the data
        b"%x\r\n%s\r\n" % (len(body) + 100, body),  # more announced than sent
        b"%x\r\n%s\r\n" % (len(body), body),  # no last chunk
        b"0x%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    ][kind]
    hdrs = [*base_headers(auth), b"Transfer-Encoding: chunked"]
    raw = request(b"POST " + CHAT + b" HTTP/1.1", hdrs, data)
    return RawSpec((raw,), half_close=kind in (5, 6))


def line_endings(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    body = chat_json(model)
    hdrs = [*base_headers(auth), b"Content-Length: %d" % len(body)]
    if rng.random() < 0.5:
        raw = request(b"POST " + CHAT + b" HTTP/1.1", hdrs, body, eol=b"\n")
    else:  # mixed: some lines CRLF, some bare LF or bare CR
        lines = [b"POST " + CHAT + b" HTTP/1.1", *hdrs]
        raw = b"".join(ln + rng.choice((CRLF, b"\n", b"\r")) for ln in lines) + CRLF + body
    return RawSpec((raw,), half_close=rng.random() < 0.3)


def big_header(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    size = rng.choice((8191, 9000, 65536, 100_000))
    where = rng.choice((b"X-Big: ", b"Authorization: Bearer ", b"x-turnout-task: "))
    hdrs = [b"Host: 127.0.0.1", where + b"a" * size]
    if rng.random() < 0.3:  # an oversized request line instead
        return RawSpec((request(b"GET /" + b"a" * size + b" HTTP/1.1", hdrs[:1]),))
    return RawSpec((request(b"GET /healthz HTTP/1.1", hdrs),))


def many_headers(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    n = rng.choice((100, 129, 500, 5000))
    same = rng.random() < 0.5  # the same name repeated, or distinct names
    hdrs = [*base_headers(auth)]
    hdrs += [(b"x-turnout-task: code" if same else b"X-H%d: v" % i) for i in range(n)]
    body = chat_json(model)
    hdrs.append(b"Content-Length: %d" % len(body))
    return RawSpec((request(b"POST " + CHAT + b" HTTP/1.1", hdrs, body),))


def truncated(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    body = chat_json(model)
    full = request(
        b"POST " + CHAT + b" HTTP/1.1",
        [*base_headers(auth), b"Content-Length: %d" % len(body)],
        body,
    )
    cut = rng.randint(1, len(full) - 1)
    return RawSpec((full[:cut],), expect=1, half_close=True)


def pipelined(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    reqs: list[bytes] = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.choice(("healthz", "models", "chat", "bad-json", "404"))
        if kind == "healthz":
            reqs.append(request(b"GET /healthz HTTP/1.1", [b"Host: 127.0.0.1"]))
        elif kind == "models":
            reqs.append(request(b"GET /v1/models HTTP/1.1", [b"Host: 127.0.0.1"]))
        elif kind == "404":
            reqs.append(request(b"GET /nope HTTP/1.1", [b"Host: 127.0.0.1"]))
        else:
            body = chat_json(model) if kind == "chat" else b'{"model": '
            hdrs = [*base_headers(auth), b"Content-Length: %d" % len(body)]
            reqs.append(request(b"POST " + CHAT + b" HTTP/1.1", hdrs, body))
    return RawSpec((b"".join(reqs),), expect=len(reqs))


def http10(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    body = chat_json(model)
    choice = rng.choice(("get", "post", "keepalive", "no-version", "http09"))
    if choice == "get":
        return RawSpec((request(b"GET /v1/models HTTP/1.0", []),))
    if choice == "post":
        hdrs = [b"Authorization: Bearer " + auth, b"Content-Length: %d" % len(body)]
        return RawSpec((request(b"POST " + CHAT + b" HTTP/1.0", hdrs, body),))
    if choice == "keepalive":
        one = request(b"GET /healthz HTTP/1.0", [b"Connection: keep-alive"])
        return RawSpec((one + one,), expect=2)
    if choice == "http09":
        return RawSpec((b"GET /healthz\r\n",))
    return RawSpec((b"GET /healthz\r\n\r\n",))


def request_line(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    line = rng.choice(
        (b"GET / HTTP/9.9", b"GET / HTTP/2.0", b"GET / HTTP/1.1.1", b"GET / http/1.1",
         b"GET  /healthz  HTTP/1.1", b"get /healthz HTTP/1.1", b"FOO\x01 / HTTP/1.1",
         b"POST http://example.invalid/v1/chat/completions HTTP/1.1", b"OPTIONS * HTTP/1.1",
         b"CONNECT 127.0.0.1:1 HTTP/1.1", b"GET /a b HTTP/1.1", b"GET /\x00 HTTP/1.1",
         b"\r\n\r\nGET /healthz HTTP/1.1", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
         b"GET /healthz?\xff\xfe HTTP/1.1", b"PRI * HTTP/2.0")
    )  # fmt: skip
    return RawSpec((request(line, [b"Host: 127.0.0.1", b"Authorization: Bearer " + auth]),))


def header_syntax(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    odd = rng.choice(
        (b"NoColon", b"X-A : v", b"X-Fold: a\r\n  folded", b"X-Nul: a\x00b", b": empty-name",
         b"X-\xe9: v", b"X-Del: \x7f", b"x-turnout-task: caf\xe9", b"x-turnout-deadline-ms: \xff\xfe",
         b"x-request-id: \xff", b"x-turnout-debug: route\xff", b"Host: a", b"X-Tab:\tv\t",
         b"x-turnout-max-cost: \xc3\x28", b"Upgrade: websocket\r\nConnection: Upgrade",
         b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__",
         b"Expect: 100-continue", b"Expect: junk")
    )  # fmt: skip
    body = chat_json(model)
    hdrs = [*base_headers(auth), odd, b"Content-Length: %d" % len(body)]
    if rng.random() < 0.2:
        hdrs = [h for h in hdrs if not h.startswith(b"Host")]
    return RawSpec((request(b"POST " + CHAT + b" HTTP/1.1", hdrs, body),))


def corrupt_chunked_gzip(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    hdrs = [*base_headers(auth), b"Transfer-Encoding: chunked", b"Content-Encoding: gzip"]
    body = chunked(rng.randbytes(rng.randint(1, 300)))
    return RawSpec((request(b"POST " + CHAT + b" HTTP/1.1", hdrs, body),))


def abort(rng: random.Random, auth: bytes, model: bytes) -> RawSpec:
    """A client that goes away: before the answer, or mid-stream after the first event."""
    stream = rng.random() < 0.6
    body = chat_json(model)
    if stream:
        body = body[:-1] + b',"stream":true}'
    hdrs = [*base_headers(auth), b"Content-Length: %d" % len(body)]
    raw = request(b"POST " + CHAT + b" HTTP/1.1", hdrs, body)
    on = rng.choice((b"data:", b"HTTP/1.1", b"")) if stream else b""
    return RawSpec(
        (raw,),
        abort_s=rng.choice((0.0, 0.005, 0.02, 0.1, 0.3)),
        abort_on=on,
        reset=rng.random() < 0.5,
    )


BUILDERS: dict[str, tuple[float, Builder]] = {
    "abort": (3, abort),
    "valid": (1, valid),
    "cl-te": (2, cl_te),
    "content-length": (2, content_length),
    "transfer-encoding": (2, transfer_encoding),
    "bad-chunks": (3, bad_chunks),
    "line-endings": (2, line_endings),
    "big-header": (2, big_header),
    "many-headers": (2, many_headers),
    "truncated": (2, truncated),
    "pipelined": (2, pipelined),
    "http10": (2, http10),
    "request-line": (3, request_line),
    "header-syntax": (3, header_syntax),
    "chunked-gzip": (1, corrupt_chunked_gzip),
}


def make(rng: random.Random, auth: str, model: str) -> tuple[str, RawSpec]:
    names = list(BUILDERS)
    name = rng.choices(names, weights=[BUILDERS[n][0] for n in names])[0]
    return name, BUILDERS[name][1](rng, auth.encode(), model.encode())


def describe(spec: RawSpec) -> str:
    data = b"".join(spec.chunks)
    head = data[:160] + (b"..." if len(data) > 160 else b"")
    flags = " then half-close" if spec.half_close else ""
    if spec.abort_s is not None:
        on = f" or on {spec.abort_on!r}" if spec.abort_on else ""
        flags += f" then {'RST' if spec.reset else 'close'} after {spec.abort_s}s{on}"
    return f"raw {len(data)}B{flags}, awaiting {spec.expect}: {head!r}"
