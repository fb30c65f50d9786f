"""The one place that classifies an upstream attempt.

Everything else (health windows, breakers, the retry loop, metrics, spans) consumes an
`Outcome` and never looks at status codes or exceptions again. Statuses, timers, the caller's
deadline, context-length errors and the neutral endings are classified here; the one adapter
from aiohttp's exceptions to a reason is `gateway.upstream.pool.transport_outcome`. The table is
docs/reliability.md's:

    success            2xx, complete stream
    provider_failure   5xx/529, 3xx (never followed), connect refused/reset/timeout, no headers/first token in time,
                       stall, cut or malformed stream/body          -> breaker failure, fail over
    throttled          429 (+ Retry-After)                          -> neutral, throttle, fail over
    caller_error       400/413/422, context length exceeded         -> neutral, pass through
    misconfigured      401/403 (credentials), 404 (model or path)   -> target set aside, fail over
    neutral            the client went away, our own bulkhead full  -> nothing
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import msgspec


class OutcomeKind(enum.Enum):
    SUCCESS = "success"
    PROVIDER_FAILURE = "provider_failure"
    THROTTLED = "throttled"
    CALLER_ERROR = "caller_error"
    MISCONFIGURED = "misconfigured"  # the target as configured cannot serve: key, model, path
    NEUTRAL = "neutral"

    @property
    def fails_over(self) -> bool:
        """Whether the next candidate should be tried (when nothing reached the client yet)."""
        return self in (
            OutcomeKind.PROVIDER_FAILURE,
            OutcomeKind.THROTTLED,
            OutcomeKind.MISCONFIGURED,
        )


class FailureReason(enum.Enum):
    """Why an attempt failed: a short, stable vocabulary for headers, logs and spans."""

    NONE = "none"
    STATUS = "status"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_ERROR = "connect_error"
    CONNECTION_RESET = "connection_reset"
    HEADERS_TIMEOUT = "headers_timeout"
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    TOTAL_TIMEOUT = "total_timeout"
    CUT = "cut"
    MALFORMED = "malformed"
    UPSTREAM_ERROR_EVENT = "upstream_error_event"
    CLIENT_GONE = "client_gone"
    DEADLINE = "deadline"  # the caller's deadline ran out: neutral for health
    SHUTDOWN = "shutdown"  # our own drain ended it: neutral
    HEDGE_LOST = "hedge_lost"  # another hedged attempt answered first: cancelled, neutral
    INTERNAL = "internal"  # the gateway itself failed during the attempt: neutral
    DIVERGED = "diverged"  # a continuation's regenerated answer differs from what was sent


_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_TRANSIENT_REASONS = frozenset({FailureReason.CONNECTION_RESET, FailureReason.CONNECT_ERROR})
_SILENT = frozenset(
    {
        FailureReason.CONNECT_TIMEOUT,
        FailureReason.HEADERS_TIMEOUT,
        FailureReason.FIRST_TOKEN_TIMEOUT,
        FailureReason.IDLE_TIMEOUT,
        FailureReason.TOTAL_TIMEOUT,
    }
)
TIMED_OUT = _SILENT  # the reasons of an attempt that got nothing back in time


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """The classified result of one upstream attempt."""

    kind: OutcomeKind
    reason: FailureReason = FailureReason.NONE
    status: int | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    retry_after_s: float | None = None
    detail: str = ""

    @property
    def transient(self) -> bool:
        """A provider failure that a second try on the same target often gets past: a one-off
        500/502/503/504, a reset connection or a failed connect. Not a timeout (a second try
        would cost the same wait) nor a refused connection (nothing is listening)."""
        if self.kind is not OutcomeKind.PROVIDER_FAILURE:
            return False
        if self.reason is FailureReason.STATUS:
            return self.status in _TRANSIENT_STATUS
        return self.reason in _TRANSIENT_REASONS

    @property
    def answered(self) -> bool:
        """The target sent something back (an answer, an error status, a bad body, a refused
        or reset connection): it is not silent. Not a timer that fired, nor a neutral ending
        (the client left, the deadline, a lost hedge), which say nothing about that."""
        kind = self.kind
        if kind is OutcomeKind.SUCCESS:  # the hot path: no set lookup (an enum's hash is slow)
            return True
        return kind is not OutcomeKind.NEUTRAL and self.reason not in _SILENT

    @property
    def summary(self) -> str:
        """A short human-readable description, e.g. `status 503` or `connect_refused`."""
        if self.reason is FailureReason.STATUS and self.status is not None:
            return f"status {self.status}"
        if self.kind is OutcomeKind.SUCCESS:
            return "ok"
        return self.reason.value


def succeeded(
    status: int, *, latency_s: float | None = None, ttft_s: float | None = None
) -> Outcome:
    return Outcome(OutcomeKind.SUCCESS, status=status, latency_s=latency_s, ttft_s=ttft_s)


# The neutral endings: the caller's or the gateway's own doing, never evidence about a target.
CLIENT_GONE = Outcome(OutcomeKind.NEUTRAL, FailureReason.CLIENT_GONE)
INTERNAL = Outcome(OutcomeKind.NEUTRAL, FailureReason.INTERNAL)
HEDGE_LOST = Outcome(OutcomeKind.NEUTRAL, FailureReason.HEDGE_LOST)
DEADLINE = Outcome(OutcomeKind.NEUTRAL, FailureReason.DEADLINE)
SHUTDOWN = Outcome(OutcomeKind.NEUTRAL, FailureReason.SHUTDOWN)
# Endings after which nobody is left to tell anything (the client left, or our drain ended it).
UNHEARD = frozenset({FailureReason.CLIENT_GONE, FailureReason.SHUTDOWN})
# A continuation that answered, but with another text than the client already has: a model may
# answer differently each time; not the target's fault, and not usable.
DIVERGED = Outcome(OutcomeKind.NEUTRAL, FailureReason.DIVERGED)

_TIMERS = frozenset(
    {
        FailureReason.HEADERS_TIMEOUT,
        FailureReason.FIRST_TOKEN_TIMEOUT,
        FailureReason.IDLE_TIMEOUT,
        FailureReason.TOTAL_TIMEOUT,
    }
)


def blamed(outcome: Outcome, now_s: float, request_deadline_s: float) -> Outcome:
    """A timer that fired because the *caller's* deadline ran out is not the provider's fault:
    neutral, before the commit point and after it."""
    if outcome.reason in _TIMERS and now_s >= request_deadline_s:
        return DEADLINE
    return outcome


def stalled(now_s: float, end_s: float, request_deadline_s: float) -> Outcome:
    """A body or stream read that got nothing in time: the attempt's whole time (`end_s`, the
    sooner of its total_s and the request's deadline) ran out, or only its idle limit."""
    late = now_s >= end_s
    reason = FailureReason.TOTAL_TIMEOUT if late else FailureReason.IDLE_TIMEOUT
    return blamed(provider_failure(reason), now_s, request_deadline_s)


_CONTEXT_MARKERS = (
    b"context_length_exceeded",
    b"maximum context length",
    b"context window",
    b"prompt is too long",  # Anthropic's
    b"exceeds the maximum number of tokens allowed",  # Gemini's "The input token count (...)"
)


def context_exceeded(status: int, body: bytes) -> bool:
    """A provider's 'prompt too long for this model' (a caller error): another, larger model
    may take it, so the loop goes on among larger candidates."""
    if status not in (400, 413, 422):
        return False
    lowered = body.lower()
    return any(m in lowered for m in _CONTEXT_MARKERS)


# Statuses that say the target, as configured, cannot serve (a caller cannot cause them: the
# gateway picks the path and the model), with what each means.
MISCONFIGURED_STATUS = {
    401: "credentials rejected",
    403: "access denied",
    404: "model or endpoint not found",
}
_PROVIDER_4XX = frozenset({408})  # the provider timed out reading our request: its fault


def classify_status(
    status: int,
    *,
    retry_after: str | None = None,
    now_epoch_s: float | None = None,
    latency_s: float | None = None,
) -> Outcome:
    """Classify an HTTP status received from a provider (no body has been relayed yet)."""
    if 200 <= status < 300:
        return succeeded(status, latency_s=latency_s)
    if status == 429:
        return Outcome(
            OutcomeKind.THROTTLED,
            FailureReason.STATUS,
            status=status,
            latency_s=latency_s,
            retry_after_s=parse_retry_after(retry_after, now_epoch_s=now_epoch_s),
        )
    meaning = MISCONFIGURED_STATUS.get(status)
    if meaning is not None:
        return Outcome(
            OutcomeKind.MISCONFIGURED, FailureReason.STATUS, status=status, detail=meaning
        )
    if 300 <= status < 400:  # redirects are never followed (they would carry keys away)
        return Outcome(
            OutcomeKind.PROVIDER_FAILURE, FailureReason.STATUS, status=status, detail="redirect"
        )
    if status >= 500 or status in _PROVIDER_4XX:
        return Outcome(OutcomeKind.PROVIDER_FAILURE, FailureReason.STATUS, status=status)
    return Outcome(OutcomeKind.CALLER_ERROR, FailureReason.STATUS, status=status)


def provider_failure(reason: FailureReason, detail: str = "") -> Outcome:
    """A transport- or protocol-level failure of the provider."""
    return Outcome(OutcomeKind.PROVIDER_FAILURE, reason, detail=detail)


def parse_retry_after(value: str | None, *, now_epoch_s: float | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP-date. None when absent or invalid.

    The result is a duration in seconds (never negative), so it can be carried between
    replicas without trusting their wall clocks.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN guard
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = datetime.now(UTC).timestamp() if now_epoch_s is None else now_epoch_s
    return max(0.0, when.timestamp() - now)
