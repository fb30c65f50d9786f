"""One case per (seed, index), the same on every run: valid, mutated JSON, headers, paths, raw.

Each case draws from its own `random.Random(seed, index)`, so `--seed S --case I` replays
case I alone, whatever the concurrency did to the order.
"""

from __future__ import annotations

import functools
import gzip
import random
import zlib

from . import bodies, rawcases
from .jsontext import dump
from .types import Case, HttpSpec, secret

JSON = "application/json"
OPERATIONS = {
    "chat": "/v1/chat/completions",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",  # the Anthropic ingress: its errors in Anthropic's shape
    "responses": "/v1/responses",  # the Responses ingress: always translated
}

CONTENT_TYPES = (
    None, "", "application/json; charset=utf-8", "application/json; charset=utf-16",
    "APPLICATION/JSON", "application/vnd.api+json", "application/json;;;", 'application/json; charset="',
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/octet-stream", "*/*", "application/jsonx", "json", ";", "application/json" + " " * 500,
)  # fmt: skip
NUMBER_JUNK = (
    "1e300", "-1", "abc", "0", "", " ", "nan", "NaN", "inf", "-inf", "1e-300", "0.0001",
    "86400001", "86400000", "1", "9" * 400, "1_000", "0x10", " 100 ", "\u0661\u0662\u0663",
    "1e3", "+5", "5.", "--1", "1,5", "12ms",
)  # fmt: skip
TURNOUT_HEADERS = {
    "x-turnout-deadline-ms": NUMBER_JUNK,
    "x-turnout-max-cost": NUMBER_JUNK,
    "x-turnout-quality-floor": (*NUMBER_JUNK, "2", "0.5", "-0.5"),
    "x-turnout-task": ("code", "math", "", "nope", "CODE", "code,math", "x" * 5000, "caf\u00e9"),
    "x-turnout-debug": ("route", "1", "true", "ROUTE", "no", "", "route" * 1000),
}
MISC_HEADERS = {
    "x-request-id": ("", "a" * 129, "../../etc", "id with space", "ok-id.1:2", "\u00e9"),
    "traceparent": ("00-" + "0" * 32 + "-" + "0" * 16 + "-01", "junk", "ff-" + "a" * 200),
    "tracestate": ("a=b," * 200, "=", "k=v"),
    "baggage": ("k=v;" * 500, "%%%"),
    "accept": ("text/event-stream", "*/*", "application/xml", "", "x" * 3000),
    "user-agent": ("x" * 7000, ""),
    "x-agent-role": ("planner", "", "x" * 2000),
    "openai-beta": ("assistants=v2", "junk"),
    "connection": ("close", "keep-alive", "upgrade", "junk"),
    "expect": ("junk", "100-continue"),
}
ENCODINGS = (
    "gzip",
    "deflate",
    "br",
    "zstd",
    "garbage",
    "gzip, gzip",
    "identity",
    "GZIP",
    "x-gzip",
    "",
)
PATHS = (
    "/", "/v1", "/v1/", "/v1/chat/completions/", "/v1//chat/completions", "//v1/chat/completions",
    "/V1/CHAT/COMPLETIONS", "/v1/chat/completions?x=1", "/v1/chat/completions%00",
    "/v1/chat%2Fcompletions", "/v1/models", "/v1/models/demo", "/v1/responses", "/healthz",
    "/v1/messages/", "/v1/messages/count_tokens", "/v1/messagesx", "/v1/messages%2Fbatches",
    "/readyz", "/metrics", "/ui", "/ui/", "/ui/app.js", "/ui/..%2f..%2fetc%2fpasswd",
    "/ui/%2e%2e/%2e%2e/etc/passwd", "/admin/targets", "/admin/config", "/admin/route",
    "/admin/reload", "/admin/traces", "/admin/traces/abc", "/admin/traces/" + "f" * 32,
    "/admin/traces?limit=abc", "/admin/traces?limit=-1", "/admin/traces?limit=1e9",
    "/admin/events?since=abc", "/admin/events?limit=99999999999999999999", "/admin/events?since=-1",
    "/v1/feedback", "/%zz", "/%", "/%C3%A9", "/a" * 2000, "/x" * 4500,
    "/v1/chat/completions?" + "a=b&" * 1000, "/.env", "/favicon.ico",
)  # fmt: skip
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "FOO")


def make_case(seed: int, index: int, aliases: tuple[str, ...]) -> Case:
    rng = random.Random(f"{seed}:{index}")
    roll = rng.random()
    if roll < 0.25:
        return _valid(rng, index, aliases)
    if roll < 0.60:
        return _mutated(rng, index, aliases)
    if roll < 0.75:
        return _headers(rng, index, aliases)
    if roll < 0.85:
        return _path_method(rng, index)
    name, spec = rawcases.make(rng, secret(index), aliases[0])
    return Case(index, "raw", f"raw:{name}", rawcases.describe(spec), raw=spec)


def auth(index: int) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {secret(index)}"),)


def describe(spec: HttpSpec) -> str:
    shown = [f"{k}: {v[:40]}" for k, v in spec.headers if k != "Authorization"]
    body = spec.body or b""
    head = body[:60] + (b"..." if len(body) > 60 else b"")
    return f"{spec.method} {spec.path[:80]} [{'; '.join(shown)}] body={len(body)}B {head!r}"


def _case(index: int, category: str, kind: str, spec: HttpSpec) -> Case:
    return Case(index, category, kind, describe(spec), http=spec)


def _valid(rng: random.Random, index: int, aliases: tuple[str, ...]) -> Case:
    model = rng.choice(aliases)
    extra: list[tuple[str, str]] = []
    if rng.random() < 0.2:
        extra.append(("x-turnout-debug", "route"))
    if rng.random() < 0.2:
        extra.append(("x-turnout-deadline-ms", "20000"))
    headers = (*auth(index), ("Content-Type", JSON), *extra)
    roll = rng.random()
    if roll < 0.16:
        stream = roll < 0.06
        body = dump(bodies.messages_body(rng, model, stream=stream))
        spec = HttpSpec("POST", OPERATIONS["messages"], headers, body, stream=stream)
        return _case(index, "valid", "valid:messages-stream" if stream else "valid:messages", spec)
    if roll < 0.28:
        stream = roll < 0.21
        body = dump(bodies.responses_body(rng, model, stream=stream))
        spec = HttpSpec("POST", OPERATIONS["responses"], headers, body, stream=stream)
        kind = "valid:responses-stream" if stream else "valid:responses"
        return _case(index, "valid", kind, spec)
    if roll < 0.72:
        stream = roll < 0.40
        body = dump(bodies.chat_body(rng, model, stream=stream))
        spec = HttpSpec("POST", OPERATIONS["chat"], headers, body, stream=stream)
        return _case(index, "valid", "valid:chat-stream" if stream else "valid:chat", spec)
    if roll < 0.92:
        spec = HttpSpec(
            "POST", OPERATIONS["embeddings"], headers, dump(bodies.embed_body(rng, model))
        )
        return _case(index, "valid", "valid:embeddings", spec)
    spec = HttpSpec("POST", "/v1/completions", headers, dump(bodies.completion_body(rng, model)))
    return _case(index, "valid", "valid:completions", spec)


def _mutated(rng: random.Random, index: int, aliases: tuple[str, ...]) -> Case:
    model = rng.choice(aliases)
    roll = rng.random()
    path, base = "/v1/chat/completions", bodies.chat_body(rng, model, stream=rng.random() < 0.3)
    if roll < 0.12:
        path, base = "/v1/embeddings", bodies.embed_body(rng, model)
    elif roll < 0.20:
        path, base = "/v1/completions", bodies.completion_body(rng, model)
    elif roll < 0.25:
        path, base = "/v1/feedback", {"request_id": "x" * rng.randint(1, 40), "score": 0.5}
    elif roll < 0.30:
        path = "/admin/route"
    mutations = bodies.MUTATIONS
    pick = rng.random()
    if pick < 0.2:
        path, base = OPERATIONS["messages"], bodies.messages_body(rng, model, stream=roll < 0.5)
        mutations = bodies.MESSAGES_API_MUTATIONS
    elif pick < 0.35:
        path, base = OPERATIONS["responses"], bodies.responses_body(rng, model, stream=roll < 0.5)
        mutations = bodies.RESPONSES_API_MUTATIONS
    body, how = bodies.mutate(rng, base, mutations)
    headers = (*auth(index), ("Content-Type", JSON))
    if rng.random() < 0.2:  # the routing explanation echoes names into a response header
        headers = (*headers, ("x-turnout-debug", "route"))
    spec = HttpSpec("POST", path, headers, body)
    kind = "json:" + "+".join(step.split(":")[0] for step in how.split("+"))
    return Case(index, "mutated_json", kind, f"({how}) {describe(spec)}", http=spec)


@functools.cache
def _bomb() -> bytes:
    """25 MB of whitespace before a valid body, gzipped to ~25 KB: over the 20 MB limit."""
    tail = b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}'
    return gzip.compress(b" " * 25_000_000 + tail, compresslevel=9, mtime=0)


def _encoded(rng: random.Random, body: bytes) -> tuple[str, bytes, str]:
    enc = rng.choice(ENCODINGS)
    how = rng.choice(("valid", "corrupt", "truncated", "trailing", "plain", "bomb"))
    if how == "bomb":
        return "gzip", _bomb(), "bomb"
    packed = gzip.compress(body, mtime=0) if "gzip" in enc.lower() else zlib.compress(body)
    data = {
        "valid": packed,
        "corrupt": rng.randbytes(rng.randint(1, 200)),
        "truncated": packed[: len(packed) // 2],
        "trailing": packed + b"junk",
        "plain": body,
    }[how]
    return enc, data, how


def _headers(rng: random.Random, index: int, aliases: tuple[str, ...]) -> Case:
    body = dump(bodies.chat_body(rng, rng.choice(aliases), stream=rng.random() < 0.3))
    headers: list[tuple[str, str]] = [*auth(index)]
    ctype: str | None = JSON
    what = rng.choice(("content-type", "content-encoding", "turnout", "turnout", "misc", "auth"))
    if what == "content-type":
        ctype = rng.choice(CONTENT_TYPES)
    elif what == "content-encoding":
        enc, body, how = _encoded(rng, body)
        headers.append(("Content-Encoding", enc))
        what = f"content-encoding:{how}"
    elif what == "turnout":
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(tuple(TURNOUT_HEADERS))
            headers.append((name, rng.choice(TURNOUT_HEADERS[name])))
    elif what == "misc":
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(tuple(MISC_HEADERS))
            headers.append((name, rng.choice(MISC_HEADERS[name])))
    else:
        headers = [
            rng.choice(
                (
                    ("Authorization", f"Basic {secret(index)}"),
                    ("Authorization", f"Bearer {secret(index)}" + "x" * 7000),
                    ("api-key", secret(index)),
                    ("x-api-key", secret(index)),
                    ("Authorization", ""),
                )
            )
        ]
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    spec = HttpSpec(
        "POST", "/v1/chat/completions", tuple(headers), body, no_content_type=ctype is None
    )
    return _case(index, "headers", f"hdr:{what}", spec)


def _path_method(rng: random.Random, index: int) -> Case:
    method = rng.choice(METHODS)
    path = rng.choice(PATHS)
    if method == "HEAD" and len(path) > 8000:  # unparseable: the server cannot know it is HEAD
        method = "GET"
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = auth(index)
    if method not in ("GET", "HEAD") and rng.random() < 0.7:
        body = rng.choice((b"{}", b"[]", b"not json", b'{"model": "demo"}', rng.randbytes(64)))
        headers = (*headers, ("Content-Type", JSON))
    return _case(index, "path_method", f"path:{method}", HttpSpec(method, path, headers, body))
