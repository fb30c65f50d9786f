"""The fault a simulated provider injects, parsed from JSON (control API) or a CLI spec.

Modes and what a client observes:

- ``ok``: a normal answer.
- ``status``: an HTTP error with an error body in the sim's format; optional ``retry_after`` (seconds, or a
  string such as an HTTP-date sent verbatim), ``code`` and ``message``.
- ``hang``: the request is accepted but no headers are ever sent until the client leaves.
- ``reset``: the TCP connection is reset without any response.
- ``slow_first_token``: streams get 200 headers at once and the first chunk ``delay_s`` later;
  non-streamed answers arrive ``delay_s`` late.
- ``cut``: ``after_chunks`` SSE events, then the connection is aborted (no terminator).
- ``stall``: ``after_chunks`` SSE events, then silence until the client leaves.
- ``malformed``: ``after_chunks`` SSE events, then an invalid JSON ``data:`` line and the end of
  the response without ``[DONE]``; non-streamed, a 200 whose body is not JSON.
- ``garbled``: the complete, valid stream to ``data: [DONE]``, with ``times`` (default 1)
  invalid JSON ``data:`` lines in a row after the first ``after_chunks`` events (at the end,
  before ``[DONE]``, if the answer has fewer events); non-streamed, a normal answer.
- ``no_done``: the complete stream including ``finish_reason``, but no ``data: [DONE]`` (a
  Gemini stream has no terminator anyway: the same as ``ok`` there).
- ``drip``: the complete, valid stream with events ``interval_s`` apart.
- ``error_event``: ``after_chunks`` SSE events, then an in-band error event (optional
  ``message``) and the end of the response without a terminator: Anthropic's
  ``event: error`` with an ``overloaded_error``, Gemini's ``data: {"error": {...
  "UNAVAILABLE"}}``, or OpenAI's ``data: {"error": {...}}``; non-streamed, a normal answer (an
  error status is the ``status`` mode).

The error bodies, the terminator and the invalid lines are in the sim's wire format (OpenAI,
Anthropic or Gemini; see :mod:`gateway.sim.formats`). A Gemini ``status`` fault's numeric
``retry_after`` is a ``RetryInfo`` in the error body, as Gemini sends it, not a header.

``count: N`` applies the fault to the next N requests only; then the sim is ``ok`` again.
``for_s: T`` applies it for T seconds from when it is set, then the sim is ``ok`` again (an
outage that ends by itself: ``{"mode": "status", "status": 503, "for_s": 60}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

FaultMode = Literal[
    "ok", "status", "hang", "reset", "slow_first_token", "cut", "stall", "malformed", "garbled",
    "no_done", "drip", "error_event",
]  # fmt: skip

# The keys each mode accepts besides "mode" and "count"; anything else is rejected.
_MODE_KEYS: dict[str, tuple[str, ...]] = {
    "ok": (),
    "status": ("status", "retry_after", "code", "message"),
    "hang": (),
    "reset": (),
    "slow_first_token": ("delay_s",),
    "cut": ("after_chunks",),
    "stall": ("after_chunks",),
    "malformed": ("after_chunks",),
    "garbled": ("after_chunks", "times"),
    "no_done": (),
    "drip": ("interval_s",),
    "error_event": ("after_chunks", "message"),
}
MODES: tuple[str, ...] = tuple(_MODE_KEYS)

DEFAULT_DELAY_S = 5.0
DEFAULT_AFTER_CHUNKS = 3
DEFAULT_INTERVAL_S = 0.3


@dataclass(frozen=True)
class Fault:
    """One fault setting. Parameters that do not belong to ``mode`` keep their defaults and are
    ignored; ``count`` is the number of requests left to affect (``None``: until changed)."""

    mode: FaultMode = "ok"
    status: int = 500
    retry_after: float | str | None = None
    code: str | None = None
    message: str | None = None
    delay_s: float = DEFAULT_DELAY_S
    after_chunks: int = DEFAULT_AFTER_CHUNKS
    interval_s: float = DEFAULT_INTERVAL_S
    times: int = 1
    count: int | None = None
    for_s: float | None = None  # the fault ends this long after it was set (SimState)

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build a fault from a JSON object such as ``{"mode": "status", "status": 503}``.

        Raises ValueError naming the offending key on any unknown mode, unknown key or bad value.
        """
        if not isinstance(data, Mapping):
            raise ValueError('fault must be a JSON object such as {"mode": "ok"}')
        mode = data.get("mode")
        if not isinstance(mode, str) or mode not in _MODE_KEYS:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {', '.join(MODES)}")
        allowed = {"mode", "count", "for_s", *_MODE_KEYS[mode]}
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(map(repr, unknown))} for fault mode {mode!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        kwargs: dict[str, Any] = {"mode": mode}
        if data.get("count") is not None:
            kwargs["count"] = _int(data, "count", minimum=1)
        if data.get("for_s") is not None:
            kwargs["for_s"] = _seconds(data, "for_s")
        if mode in ("status", "error_event"):
            value = data.get("message")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"'message' must be a string, got {value!r}")
            kwargs["message"] = value
        if mode == "status":
            if "status" not in data:
                raise ValueError("fault mode 'status' needs a 'status' such as 503")
            kwargs["status"] = _int(data, "status", minimum=400, maximum=599)
            kwargs["retry_after"] = _retry_after(data.get("retry_after"))
            code = data.get("code")
            if code is not None and not isinstance(code, str):
                raise ValueError(f"'code' must be a string, got {code!r}")
            kwargs["code"] = code
        if "delay_s" in data:
            kwargs["delay_s"] = _seconds(data, "delay_s")
        if "interval_s" in data:
            kwargs["interval_s"] = _seconds(data, "interval_s")
        if "after_chunks" in data:
            kwargs["after_chunks"] = _int(data, "after_chunks", minimum=0)
        if "times" in data:
            kwargs["times"] = _int(data, "times", minimum=1)
        return cls(**kwargs)

    @classmethod
    def parse_spec(cls, spec: str) -> Fault:
        """Parse a CLI spec: ``ok``, ``status:503``, ``status:429:2`` (Retry-After 2 s; the
        third part may also be an HTTP-date), ``hang``, ``reset``, ``slow_first_token:20``,
        ``cut:5``, ``stall:5``, ``malformed:5``, ``garbled:5`` (one bad line after 5 events),
        ``garbled:5:4`` (four in a row), ``no_done``, ``drip:0.3``, ``error_event:5``. A ``*N`` suffix
        sets ``count`` (``status:503*2``); a spec starting with ``{`` is read as JSON."""
        text = spec.strip()
        try:
            if text.startswith("{"):
                return cls.from_json(orjson.loads(text))
            return cls.from_json(_spec_to_json(text))
        except ValueError as exc:
            raise ValueError(f"bad fault spec {spec!r}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON form accepted by :meth:`from_json` (only the keys ``mode`` uses)."""
        out: dict[str, Any] = {"mode": self.mode}
        for key in _MODE_KEYS[self.mode]:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.count is not None:
            out["count"] = self.count
        if self.for_s is not None:
            out["for_s"] = self.for_s
        return out

    def consumed(self) -> Fault:
        """The fault that applies after one more request took this one."""
        if self.count is None:
            return self
        if self.count <= 1:
            return Fault()
        return replace(self, count=self.count - 1)


def _spec_to_json(text: str) -> dict[str, Any]:
    body, star, count = text.rpartition("*")
    if not star:
        body = text
    mode, _, rest = body.partition(":")
    out: dict[str, Any] = {"mode": mode}
    if star:
        out["count"] = _number(count, "count", integer=True)
    if mode == "status":
        status, _, retry_after = rest.partition(":")
        if not status:
            raise ValueError("status needs a code, e.g. status:503 or status:429:2")
        out["status"] = _number(status, "status", integer=True)
        if retry_after:
            try:
                out["retry_after"] = _number(retry_after, "retry_after", integer=False)
            except ValueError:
                out["retry_after"] = retry_after  # an HTTP-date, sent verbatim
    elif rest:
        keys = _MODE_KEYS.get(mode, ())
        if not keys:
            raise ValueError(f"fault mode {mode!r} takes no parameter")
        values = rest.split(":") if mode == "garbled" else [rest]  # garbled:AFTER[:TIMES]
        if len(values) > len(keys):
            raise ValueError(f"fault mode {mode!r} takes at most {len(keys)} parameter(s)")
        for key, value in zip(keys, values, strict=False):
            out[key] = _number(value, key, integer=key in ("after_chunks", "times"))
    return out


def _number(text: str, key: str, *, integer: bool) -> int | float:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{key} must be {kind}, got {text!r}") from None


def _int(data: Mapping[str, Any], key: str, *, minimum: int, maximum: int | None = None) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"'{key}' must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"'{key}' must be {bound}, got {value}")
    return value


def _seconds(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"'{key}' must be a number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"'{key}' must be >= 0, got {value}")
    return float(value)


def _retry_after(value: Any) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("'retry_after' must not be empty")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"'retry_after' must be seconds or an HTTP-date string, got {value!r}")
    if value < 0:
        raise ValueError(f"'retry_after' must be >= 0, got {value}")
    return float(value) if isinstance(value, float) else int(value)
