"""Recent traces for the dashboard: a span processor that keeps the last N traces in memory.

`RecentTraces` is one more span processor on the gateway's TracerProvider. `on_end` only files
the finished span under its trace id (a lock, an append): the conversion to plain dicts happens
when a feed asks for a snapshot. Memory is bounded by the number of traces, the spans kept per
trace and the SDK's own per-span limits.

`Timeline` keeps the notable events: failovers (the `turnout.failover` events of a request's
SERVER span, filed when it ends) and breaker transitions (moved in from the health store's
`TransitionLog` when the feed is read; each is recorded once, with the time it happened).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

FAILOVER_EVENT = "turnout.failover"
# Never shown, whatever a span carries: content (if an operator opted in) and credentials.
_HIDDEN_PREFIXES = (
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
)
_HIDDEN_PARTS = ("authorization", "api_key", "api-key", "cookie", "password", "secret")

Json = dict[str, Any]


def _visible(key: str) -> bool:
    k = key.lower()
    return not k.startswith(_HIDDEN_PREFIXES) and not any(p in k for p in _HIDDEN_PARTS)


def _attrs(attributes: Mapping[str, Any] | None) -> Json:
    out: Json = {}
    for key, value in (attributes or {}).items():
        if _visible(key):
            out[key] = list(value) if isinstance(value, tuple | list) else value
    return out


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


class Timeline:
    """A bounded, thread-safe log of breaker transitions and failovers (wall-clock seconds)."""

    def __init__(self, max_events: int = 500) -> None:
        self._lock = threading.Lock()
        self._events: deque[Json] = deque(maxlen=max(1, max_events))
        self._seq = 0

    def add(self, kind: str, at: float, **fields: Any) -> None:
        with self._lock:
            self._seq += 1
            self._events.append({"seq": self._seq, "at": round(at, 3), "kind": kind, **fields})

    def snapshot(self, limit: int | None = None, since: int = 0) -> list[Json]:
        """Newest first, at most `limit`, only those after sequence number `since`."""
        with self._lock:
            events = [dict(e) for e in self._events if e["seq"] > since]
        events.sort(key=lambda e: (e["at"], e["seq"]), reverse=True)
        return events if limit is None else events[:limit]


class _Group:
    """The kept spans of one trace, and how many were dropped over the per-trace bound."""

    __slots__ = ("dropped", "others", "roots", "spans")

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.roots = 0
        self.others = 0
        self.dropped = 0

    def add(self, span: ReadableSpan, root: bool, bound: int) -> None:
        # Roots and the rest are bounded apart, so a root always finds room after its children.
        if (self.roots if root else self.others) >= bound:
            self.dropped += 1
            return
        self.spans.append(span)
        if root:
            self.roots += 1
        else:
            self.others += 1


class RecentTraces(SpanProcessor):
    """Keeps the spans of the last `max_traces` traces, grouped by trace id.

    A trace is finished once a root span (the gateway's SERVER span) has ended. Finished and
    in-progress traces are bounded apart, so a burst of short requests never evicts the
    attempts of a long one still streaming.
    """

    def __init__(
        self, max_traces: int = 200, max_spans: int = 64, timeline: Timeline | None = None
    ) -> None:
        self.max_traces = max(1, max_traces)
        self.max_spans = max(1, max_spans)
        self.timeline = timeline if timeline is not None else Timeline()
        self._lock = threading.Lock()
        self._done: OrderedDict[int, _Group] = OrderedDict()  # oldest first
        self._pending: OrderedDict[int, _Group] = OrderedDict()

    # -- SpanProcessor ---------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None:
            return
        tid, root = ctx.trace_id, _is_root(span)
        with self._lock:
            group = self._pending.get(tid) or self._done.get(tid)
            if group is None:
                group = self._pending[tid] = _Group()
                _trim(self._pending, self.max_traces)
            group.add(span, root, self.max_spans)
            if root:
                self._pending.pop(tid, None)
                self._done[tid] = group
                self._done.move_to_end(tid)
                _trim(self._done, self.max_traces)
        if root and span.events:
            self._file_failovers(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- reading ---------------------------------------------------------------------------------

    def snapshot(self, limit: int | None = None) -> list[Json]:
        """Finished traces (a root span has ended), newest first, as plain dicts."""
        with self._lock:
            groups = list(reversed(self._done.values()))[:limit]
            copies = [(list(g.spans), g.dropped) for g in groups]
        return [trace_view(spans, dropped) for spans, dropped in copies]

    def get(self, trace_id: str) -> Json | None:
        """One trace by its 32-hex-digit id, finished or not."""
        try:
            key = int(trace_id, 16)
        except ValueError:
            return None
        with self._lock:
            group = self._pending.get(key) or self._done.get(key)
            if group is None:
                return None
            spans, dropped = list(group.spans), group.dropped
        return trace_view(spans, dropped)

    def counts(self) -> tuple[int, int]:
        """(traces held, of which still in progress)."""
        with self._lock:
            return len(self._done) + len(self._pending), len(self._pending)

    def _file_failovers(self, root: ReadableSpan) -> None:
        route = (root.attributes or {}).get("turnout.route")
        trace_id = format(root.context.trace_id, "032x") if root.context else None
        for event in root.events:
            if event.name != FAILOVER_EVENT:
                continue
            a = event.attributes or {}
            self.timeline.add(
                "failover",
                event.timestamp / 1e9,
                target=a.get("turnout.target"),
                reason=a.get("turnout.reason"),
                attempt=a.get("turnout.attempt"),
                route=route,
                trace_id=trace_id,
            )


def _trim(groups: OrderedDict[int, _Group], bound: int) -> None:
    while len(groups) > bound:
        groups.popitem(last=False)


def _is_root(span: ReadableSpan) -> bool:
    """The gateway's own root: no parent, or a parent in the caller's process."""
    return span.parent is None or span.parent.is_remote


def _span_view(span: ReadableSpan, t0: int) -> Json:
    start = span.start_time or t0
    end = span.end_time or start
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name.lower(),
        "span_id": format(span.context.span_id, "016x") if span.context else None,
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "start_offset_ms": _ms(start - t0),
        "duration_ms": _ms(end - start),
        "status": span.status.status_code.name.lower(),
        "status_message": span.status.description,
        "attributes": _attrs(span.attributes),
        "events": [
            {
                "name": e.name,
                "offset_ms": _ms(e.timestamp - t0),
                "attributes": _attrs(e.attributes),
            }
            for e in span.events
        ],
    }


def _first(spans: Iterable[ReadableSpan]) -> ReadableSpan | None:
    return min(spans, key=lambda s: s.start_time or 0, default=None)


def trace_view(spans: list[ReadableSpan], dropped: int = 0) -> Json:
    """A trace as the dashboard shows it: a summary and its spans in start order."""
    ordered = sorted(spans, key=lambda s: s.start_time or 0)
    t0 = min((s.start_time or 0) for s in ordered)
    t1 = max((s.end_time or s.start_time or 0) for s in ordered)
    root = _first(s for s in ordered if _is_root(s))
    head = root or ordered[0]
    attrs = head.attributes or {}
    http_status = attrs.get("http.response.status_code")
    error = head.status.status_code is StatusCode.ERROR or (
        isinstance(http_status, int) and http_status >= 500
    )
    clients = [s for s in ordered if s.kind is SpanKind.CLIENT]
    served = [s for s in clients if (s.attributes or {}).get("turnout.outcome") == "success"]
    ctx = head.context
    return {
        "trace_id": format(ctx.trace_id, "032x") if ctx else None,
        "name": head.name,
        "route": attrs.get("turnout.route"),
        "request_id": attrs.get("turnout.request_id"),
        "status": "in_progress" if root is None else ("error" if error else "ok"),
        "http_status": http_status if isinstance(http_status, int) else None,
        "start": round(t0 / 1e9, 6),
        "duration_ms": _ms(t1 - t0),
        "attempts": len(clients),
        "failovers": sum(1 for s in ordered for e in s.events if e.name == FAILOVER_EVENT),
        "target": (served[-1].attributes or {}).get("turnout.target") if served else None,
        "dropped_spans": dropped,
        "spans": [_span_view(s, t0) for s in ordered],
    }
