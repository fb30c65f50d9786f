"""One limit's count in its current window, and the share a replica keeps to while it cannot
see the fleet.

    used = fleet (the fleet's total at the last sync, ours included) + sending + pending

`pending` is what this replica counted since its last sync; `sending` is on its way to Redis
(back into `pending` if the round trip fails); `flushed` is what the fleet total holds of
ours (re-sent if Redis comes back empty). Everything is O(1) and does no I/O: the background
sync (`gateway.limits.sync`) is the only writer of `fleet` and `flushed`.
"""

from __future__ import annotations

from gateway.limits.windows import Window


def share(limit: int, replicas: int) -> int:
    """A replica's part of `limit` while Redis is away: an even share of the replicas seen
    recently, at least 1 (a limit is never turned into a refusal of everything)."""
    return max(1, limit // max(1, replicas))


class Counter:
    __slots__ = ("field", "fleet", "flushed", "pending", "sending", "window")

    def __init__(self, field: str, window: Window) -> None:
        self.field = field  # the Redis hash field, e.g. `web|r`
        self.window = window
        self.fleet = 0
        self.pending = 0
        self.sending = 0
        self.flushed = 0

    @property
    def used(self) -> int:
        """The fleet's count in this window, as far as this replica knows."""
        return self.fleet + self.sending + self.pending

    @property
    def own(self) -> int:
        """This replica's own count in this window."""
        return self.flushed + self.sending + self.pending

    def at(self, window: Window) -> Counter:
        """Count in `window` from now on: a new window starts from nothing."""
        if window is not self.window and window != self.window:
            self.window = window
            self.fleet = self.pending = self.sending = self.flushed = 0
        return self

    def admits(self, window: Window, limit: int, shared: bool, replicas: int) -> bool:
        """Room for one more in `window`? `shared`: the fleet total is current (Redis answers,
        or there is no Redis: one process is the whole fleet); else this replica also keeps to
        its share. (`used` and `own` spelled out: this runs for every request.)"""
        if window is not self.window:
            self.at(window)
        if self.fleet + self.sending + self.pending >= limit:
            return False
        return shared or self.flushed + self.sending + self.pending < share(limit, replicas)

    # -- the background sync's side ---------------------------------------------------------

    def take(self) -> int:
        """What to send now (it stays counted as `sending` until `settle` or `unsend`)."""
        amount, self.pending = self.pending, 0
        self.sending += amount
        return amount

    def settle(self, fleet_total: int) -> None:
        """The round trip went through: `fleet_total` (ours sent included) is the fleet's."""
        self.flushed += self.sending
        self.sending = 0
        self.fleet = fleet_total

    def unsend(self) -> None:
        """The round trip failed: what was sent is pending again (sent with the next one)."""
        self.pending += self.sending
        self.sending = 0

    def resend(self, sent: int) -> None:
        """Redis came back empty: all it holds of ours is `sent` (this tick's); re-send the
        rest with the next tick."""
        self.pending += self.flushed - sent
        self.flushed = sent
