"""Every client key's counters: admission before routing, accounting after each attempt.

    admit(client)               -> Verdict: admitted (with what the headers say) or refused
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
    """What admission decided, and what the `x-ratelimit-*` headers say about it."""

    refused: str  # "" admitted; else the limit: rpm | tpm | usd_per_day | usd_per_month
    retry_after_s: float = 0.0
    rpm: int | None = None
    requests_left: int = 0
    requests_reset_s: float = 0.0
    tpm: int | None = None
    tokens_left: int = 0
    tokens_reset_s: float = 0.0
    budget_reset_at: float = 0.0  # wall seconds, for a refused budget


class Meter:
    """One client's four counters (only those its limits use are ever consulted)."""

    __slots__ = ("day", "limits", "month", "name", "requests", "tokens")

    def __init__(self, name: str, limits: ClientLimits, windows: Windows) -> None:
        self.name = name
        self.limits = limits
        self.requests = Counter(f"{name}|r", windows.minute)
        self.tokens = Counter(f"{name}|t", windows.minute)
        self.day = Counter(name, windows.day)
        self.month = Counter(name, windows.month)

    def counters(self) -> Iterator[Counter]:
        yield from (self.requests, self.tokens, self.day, self.month)


class Windows:
    """The current minute, day and month; recomputed only when one ends (a float compare)."""

    __slots__ = ("_next", "day", "minute", "month")

    def __init__(self, wall: float) -> None:
        self.minute = window(Span.MINUTE, wall)
        self.day = window(Span.DAY, wall)
        self.month = window(Span.MONTH, wall)
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
        self.windows = Windows(wall())
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
            meter.limits = c.limits
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

    def admit(self, client: ClientConfig) -> Verdict | None:
        """Count one request for `client` if its limits admit it; None: it has no limits."""
        meter = self.meters.get(client.name)
        if meter is None:
            return None
        now = self.wall()
        w = self.windows.at(now)
        lim = meter.limits
        shared, replicas = self.shared, self.replicas
        if lim.usd_per_month is not None:
            month = meter.month.at(w.month)
            if not month.admits(nano_usd(lim.usd_per_month), shared, replicas):
                return _refused("usd_per_month", w.month, now)
        if lim.usd_per_day is not None:
            day = meter.day.at(w.day)
            if not day.admits(nano_usd(lim.usd_per_day), shared, replicas):
                return _refused("usd_per_day", w.day, now)
        requests = meter.requests.at(w.minute)
        tokens = meter.tokens.at(w.minute)
        reset_s = w.minute.ends_at - now
        rpm, tpm = lim.rpm, lim.tpm
        refused = ""
        if rpm is not None and not requests.admits(rpm, shared, replicas):
            refused = "rpm"
        elif tpm is not None and not tokens.admits(tpm, shared, replicas):
            refused = "tpm"
        else:
            requests.pending += 1
        return Verdict(
            refused,
            reset_s if refused else 0.0,
            rpm,
            0 if rpm is None else max(0, rpm - requests.used),
            reset_s,
            tpm,
            0 if tpm is None else max(0, tpm - tokens.used),
            reset_s,
        )

    def account(self, name: str, tokens: int, spend_nusd: int) -> None:
        """What an answer used, counted in the current windows."""
        meter = self.meters.get(name)
        if meter is None:
            return
        w = self.windows.at(self.wall())
        meter.tokens.at(w.minute).pending += tokens
        meter.day.at(w.day).pending += spend_nusd
        meter.month.at(w.month).pending += spend_nusd


def _refused(budget: str, w: Window, now: float) -> Verdict:
    return Verdict(budget, w.reset_s(now), budget_reset_at=w.ends_at)
