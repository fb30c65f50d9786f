"""Structured logs: one JSON object per line, with the trace and span ids of the request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = format(ctx.trace_id, "032x")
            out["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def use_json_logs() -> None:
    """Switch every root handler to JSON lines."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())


class RateLimitedLog:
    """At most `burst` lines per key and `period_s`; the next line after a quiet spell says how
    many were suppressed. Keys are a fixed vocabulary (kinds of fault), never request data, so
    a flood of bad requests costs a few lines, not one per request."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._period_s = period_s
        self._clock = clock
        self._keys: dict[str, list[float]] = {}  # key -> [window start, lines, suppressed]

    def warning(self, key: str, msg: str, *args: object, **kw: Any) -> None:
        self._log(logging.WARNING, key, msg, args, kw)

    def error(self, key: str, msg: str, *args: object, **kw: Any) -> None:
        self._log(logging.ERROR, key, msg, args, kw)

    def _log(self, level: int, key: str, msg: str, args: tuple[object, ...], kw: Any) -> None:
        now = self._clock()
        state = self._keys.get(key)
        if state is None or now - state[0] >= self._period_s:
            if state is not None and state[2]:
                self._logger.log(
                    level, "%d more like '%s' suppressed in %.0f s", state[2], key, now - state[0]
                )
            if len(self._keys) >= 1024:
                self._keys.clear()
            state = self._keys[key] = [now, 0, 0]
        if state[1] < self._burst:
            state[1] += 1
            self._logger.log(level, msg, *args, **kw)
        else:
            state[2] += 1
