"""A JSON writer for fuzzing: standard JSON, plus what the standard forbids on purpose.

`Pairs` writes an object with duplicate keys, `Raw` writes bytes verbatim (invalid UTF-8,
`NaN`, a 1100-level nesting built without recursion); floats NaN/inf are written as the
`NaN`/`Infinity` literals Python's `json` accepts and orjson refuses.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

from .types import Json


@dataclass(frozen=True, slots=True)
class Pairs:
    """An object written key by key: duplicate keys allowed."""

    items: tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes written as they are, where a value goes."""

    data: bytes


def dump(value: object) -> bytes:
    out = bytearray()
    _write(value, out, 0)
    return bytes(out)


def _write(value: object, out: bytearray, depth: int) -> None:
    if depth > 400:  # deep values are built as Raw; this guards the writer's own recursion
        out += b"null"
    elif isinstance(value, Raw):
        out += value.data
    elif value is None or isinstance(value, bool | int | str):
        out += json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    elif isinstance(value, float):
        out += _float(value)
    elif isinstance(value, Pairs):
        _object(value.items, out, depth)
    elif isinstance(value, dict):
        _object(tuple((str(k), v) for k, v in value.items()), out, depth)
    elif isinstance(value, list | tuple):
        out += b"["
        for i, item in enumerate(value):
            if i:
                out += b","
            _write(item, out, depth + 1)
        out += b"]"
    else:
        out += json.dumps(str(value)).encode()


def _float(value: float) -> bytes:
    if math.isnan(value):
        return b"NaN"
    if math.isinf(value):
        return b"Infinity" if value > 0 else b"-Infinity"
    return repr(value).encode()


def _object(items: tuple[tuple[str, object], ...], out: bytearray, depth: int) -> None:
    out += b"{"
    for i, (k, v) in enumerate(items):
        if i:
            out += b","
        out += json.dumps(k, ensure_ascii=False).encode("utf-8", "surrogatepass")
        out += b":"
        _write(v, out, depth + 1)
    out += b"}"


def nested(depth: int, rng: random.Random) -> Raw:
    """`depth` levels of arrays, objects or a mix, around a small leaf."""
    style = rng.choice(("array", "object", "mixed"))
    opens: list[bytes] = []
    closes: list[bytes] = []
    for i in range(depth):
        as_array = style == "array" or (style == "mixed" and i % 2 == 0)
        opens.append(b"[" if as_array else b'{"a":')
        closes.append(b"]" if as_array else b"}")
    return Raw(b"".join(opens) + b"1" + b"".join(reversed(closes)))


INVALID_UTF8 = (
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",  # a lead byte without its continuation
    b"\xa0\xa1",  # continuation bytes alone
    b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xc0\xaf",  # an overlong '/'
    b"\xe2\x82",  # truncated 3-byte sequence
)


def bad_string(rng: random.Random) -> Raw:
    """A JSON string holding invalid UTF-8 bytes."""
    junk = rng.choice(INVALID_UTF8)
    return Raw(b'"hello ' + junk + b' world"')


ODD_ESCAPES = (
    '"\\ud800"',  # lone high surrogate
    '"\\udc00x"',  # lone low surrogate
    '"\\u0000"',  # NUL
    '"\\x41"',  # not a JSON escape
    '"\\u12"',  # short escape
    '"tab\there"',  # raw control character
)


def odd_literal(rng: random.Random) -> Raw:
    """A value JSON does not allow, or allows only just."""
    choices = [
        "NaN",
        "Infinity",
        "-Infinity",
        "nan",
        "1e400",
        "-1e400",
        str(2**64),
        str(-(2**63) - 1),
        "1" * 400,
        "0x10",
        "01",
        "+1",
        ".5",
        "1.",
        "True",
        "None",
        "undefined",
        "'single'",
        *ODD_ESCAPES,
    ]
    return Raw(rng.choice(choices).encode())


def junk_value(rng: random.Random, *, avoid: type | None = None) -> Json | Raw:
    """A value of a random JSON type (and sometimes one JSON forbids)."""
    pool: list[Json | Raw] = [
        None,
        True,
        False,
        0,
        -1,
        2**31,
        2**53 + 1,
        1.5,
        -0.0,
        1e308,
        "",
        "x",
        "demo",
        " " * 3,
        "\u0000",
        "\u202e\u0645\u00e9\U0001f600",
        [],
        [None],
        [1, "a", {}],
        {},
        {"k": "v"},
        {"": None},
        "a" * 5000,
    ]
    picks = [v for v in pool if avoid is None or not isinstance(v, avoid)]
    if rng.random() < 0.12:
        return odd_literal(rng)
    if rng.random() < 0.05:
        return bad_string(rng)
    return rng.choice(picks)
