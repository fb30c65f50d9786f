"""The fuzzer's vocabulary: a case (what to send), an answer (what came back)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Json = Any  # a value json.loads could return

SECRET_PREFIX = "sk-fuzz-SECRET"

# Every case belongs to one of these; the smoke test wants each one exercised.
CATEGORIES = ("valid", "mutated_json", "headers", "path_method", "raw")


def secret(index: int) -> str:
    """The credential case `index` sends: it must never show up in the gateway's output."""
    return f"{SECRET_PREFIX}-{index}"


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """A request aiohttp's client can send (well-formed HTTP, odd content)."""

    method: str
    path: str  # already percent-encoded, with its query
    headers: tuple[tuple[str, str], ...]
    body: bytes | None = None
    no_content_type: bool = False  # do not let aiohttp add one
    stream: bool = False  # a valid streaming request: expect SSE ending in [DONE]


@dataclass(frozen=True, slots=True)
class RawSpec:
    """Bytes written to a fresh TCP connection; `expect` answers are awaited."""

    chunks: tuple[bytes, ...]
    expect: int = 1
    half_close: bool = False  # shut our write side at once (a truncated request)
    abort_s: float | None = None  # go away after this long (or once `abort_on` is seen)
    abort_on: bytes = b""
    reset: bool = False  # go away with a TCP RST (SO_LINGER 0) rather than a FIN


@dataclass(frozen=True, slots=True)
class Case:
    index: int
    category: str  # one of CATEGORIES
    kind: str  # e.g. "valid:chat-stream", "json:wrong-type:temperature", "raw:cl-te"
    desc: str  # a short human repro
    http: HttpSpec | None = None
    raw: RawSpec | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


# Answer outcomes: how the exchange ended, whatever the replies said.
OK = "ok"  # every awaited reply arrived
HANG = "hang"  # no answer and no close within the bound
CLOSED = "closed"  # the server closed without (all) answers
MALFORMED = "malformed"  # bytes came back that are not an HTTP response
CLIENT_ERROR = "client_error"  # the fuzzer itself could not send the case
ABORTED = "aborted"  # we went away on purpose (a client disconnect case)


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: str
    replies: tuple[Reply, ...] = ()
    detail: str = ""
    seconds: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
