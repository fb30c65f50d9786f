"""Every client key's counters: admission before routing, accounting after each attempt.

    admit(client)               -> its Meter (the headers read it), or raises Refused
    account(client, tokens, $)  -> counted in the minute's tokens and the day's and month's spend

Both are O(1) in memory, on the wall clock (`wall`, injected: tests run in virtual time).
Spend is counted in billionths of a dollar (integers add up exactly in Redis). Which limit
refuses first: the month's budget, the day's, then rpm, then tpm (the longest wait first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from gateway.config.clients import ClientConfig, ClientLimits
from gateway.limits.counter import Counter
from gateway.limits.windows import Span, Window, window

NANO = 1_000_000_000  # spend unit: 1e-9 USD


def nano_usd(usd: float) -> int:
    return round(usd * NANO)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A refusal: which limit, how long until its window resets (and when, for a budget)."""

    refused: str  # rpm | tpm | usd_per_day | usd_per_month
    retry_after_s: float
    reset_at: float  # wall seconds


class Refused(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.refused)
        self.verdict = verdict


class Meter:
    """One client's four counters (only those its limits use are ever consulted)."""

    __slots__ = (
        "day",
        "day_nusd",
        "limits",
        "month",
        "month_nusd",
        "name",
        "requests",
        "rpm_text",
        "tokens",
        "tpm_text",
        "windows",
    )

    def __init__(self, name: str, limits: ClientLimits, windows: Windows) -> None:
        self.name = name
        self.windows = windows
        self.requests = Counter(f"{name}|r", windows.minute)
        self.tokens = Counter(f"{name}|t", windows.minute)
        self.day = Counter(name, windows.day)
        self.month = Counter(name, windows.month)
        self.use(limits)

    def use(self, limits: ClientLimits) -> None:
        self.limits = limits
        self.rpm_text, self.tpm_text = str(limits.rpm), str(limits.tpm)  # for the headers
        self.day_nusd = None if limits.usd_per_day is None else nano_usd(limits.usd_per_day)
        self.month_nusd = None if limits.usd_per_month is None else nano_usd(limits.usd_per_month)

    def counters(self) -> Iterator[Counter]:
        yield from (self.requests, self.tokens, self.day, self.month)

    def requests_left(self) -> int:
        rpm = self.limits.rpm
        return 0 if rpm is None else max(0, rpm - self.requests.used)

    def tokens_left(self) -> int:
        tpm = self.limits.tpm
        return 0 if tpm is None else max(0, tpm - self.tokens.used)


class Windows:
    """The current minute, day and month on the `wall` clock; recomputed only when one ends
    (a float compare)."""

    __slots__ = ("_next", "day", "minute", "month", "wall")

    def __init__(self, wall: Callable[[], float]) -> None:
        self.wall = wall
        now = wall()
        self.minute = window(Span.MINUTE, now)
        self.day = window(Span.DAY, now)
        self.month = window(Span.MONTH, now)
        self._next = self.minute.ends_at

    def at(self, wall: float) -> Windows:
        if wall >= self._next:
            self.minute = window(Span.MINUTE, wall)
            if wall >= self.day.ends_at:
                self.day = window(Span.DAY, wall)
                if wall >= self.month.ends_at:
                    self.month = window(Span.MONTH, wall)
            self._next = self.minute.ends_at
        return self

    def of(self, span: Span) -> Window:
        return {Span.MINUTE: self.minute, Span.DAY: self.day, Span.MONTH: self.month}[span]


class Ledger:
    def __init__(
        self, clients: Iterable[ClientConfig] = (), wall: Callable[[], float] = time.time
    ) -> None:
        self.wall = wall
        self.windows = Windows(wall)
        self.meters: dict[str, Meter] = {}
        # Set by the background sync: whether the fleet totals are current, and how many
        # replicas were seen recently (the share each keeps to while they are not).
        self.shared = True
        self.replicas = 1
        self.configure(clients)

    def configure(self, clients: Iterable[ClientConfig]) -> None:
        """The clients of a (re)loaded config: counts carry over for names that stay."""
        meters: dict[str, Meter] = {}
        for c in clients:
            if c.limits is None:
                continue
            meter = self.meters.get(c.name)
            if meter is None:
                meter = Meter(c.name, c.limits, self.windows)
            meter.use(c.limits)
            meters[c.name] = meter
        self.meters = meters

    def roll(self) -> Windows:
        """Every counter in the current windows (the sync reads the fleet's totals for all)."""
        w = self.windows.at(self.wall())
        for m in self.meters.values():
            m.requests.at(w.minute)
            m.tokens.at(w.minute)
            m.day.at(w.day)
            m.month.at(w.month)
        return w

    def admit(self, client: ClientConfig) -> Meter | None:
        """Count one request for `client`: its meter (what the answer's headers read), or
        None when it has no limits. Raises Refused when a limit does not admit it."""
        meter = self.meters.get(client.name)
        if meter is None:
            return None
        now = self.wall()
        w = self.windows.at(now)
        shared, replicas = self.shared, self.replicas
        month, day = meter.month_nusd, meter.day_nusd
        if month is not None and not meter.month.admits(w.month, month, shared, replicas):
            raise Refused(_refused("usd_per_month", w.month, now))
        if day is not None and not meter.day.admits(w.day, day, shared, replicas):
            raise Refused(_refused("usd_per_day", w.day, now))
        lim = meter.limits
        requests = meter.requests
        if lim.rpm is not None and not requests.admits(w.minute, lim.rpm, shared, replicas):
            raise Refused(_refused("rpm", w.minute, now))
        if lim.tpm is not None and not meter.tokens.admits(w.minute, lim.tpm, shared, replicas):
            raise Refused(_refused("tpm", w.minute, now))
        requests.at(w.minute)  # (a no-op unless it has no rpm: then it was not rolled above)
        requests.pending += 1
        return meter

    def account(self, name: str, tokens: int, spend_nusd: int) -> None:
        """What an answer used, counted in the current windows."""
        meter = self.meters.get(name)
        if meter is None:
            return
        w = self.windows.at(self.wall())
        meter.tokens.at(w.minute).pending += tokens
        meter.day.at(w.day).pending += spend_nusd
        meter.month.at(w.month).pending += spend_nusd


def _refused(limit: str, w: Window, now: float) -> Verdict:
    return Verdict(limit, w.reset_s(now), w.ends_at)
