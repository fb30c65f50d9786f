"""The windows limits are counted in, on the UTC wall clock: the minute (rpm, tpm), the day
and the calendar month (budgets).

Fixed windows, not sliding: every replica names a window the same way (its epoch), so the
fleet's counts add up in one Redis hash per window, and a window's reset time is exact (what
`x-ratelimit-reset-*` and `Retry-After` say). The price is the edge: a client may spend one
window's limit at its very end and the next one's at the start of the next.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

MINUTE_S = 60.0
DAY_S = 86_400.0


class Span(enum.Enum):
    MINUTE = "m"
    DAY = "d"
    MONTH = "mo"


@dataclass(frozen=True, slots=True)
class Window:
    """One window: `epoch` counts minutes or days since 1970, or months (year*12 + month-1)."""

    span: Span
    epoch: int
    ends_at: float  # wall seconds (UTC) when the next window begins

    def reset_s(self, wall: float) -> float:
        return max(0.0, self.ends_at - wall)


def window(span: Span, wall: float) -> Window:
    """The window of `span` that `wall` (seconds since the epoch, UTC) falls in."""
    if span is Span.MINUTE:
        epoch = int(wall // MINUTE_S)
        return Window(span, epoch, (epoch + 1) * MINUTE_S)
    if span is Span.DAY:
        epoch = int(wall // DAY_S)
        return Window(span, epoch, (epoch + 1) * DAY_S)
    at = datetime.fromtimestamp(wall, UTC)
    epoch = at.year * 12 + at.month - 1
    year, month = divmod(epoch + 1, 12)
    return Window(span, epoch, datetime(year, month + 1, 1, tzinfo=UTC).timestamp())


def duration(seconds: float) -> str:
    """A reset time as OpenAI writes it in `x-ratelimit-reset-*`: `20ms`, `1s`, `6m0s`,
    `2h5m0s`."""
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = int(-(-seconds // 1))  # rounded up: a client that waits this long finds it reset
    if whole < 60:  # a minute's window: the usual case
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s"
