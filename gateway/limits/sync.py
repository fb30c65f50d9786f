"""The limits' background round trip to Redis: once per period (`health.sync_period_s`, the
fleet store's Redis settings), one pipeline adds this replica's deltas and reads the fleet's
totals back. The request path never waits for it.

    HSETNX/HGET meta epoch          Redis's epoch: a new one means it came back empty
    HINCRBY <window> <field> delta  for each counter that moved, EXPIRE on each window written
    HSET replicas <id> <now ms>     this replica is alive; HGETALL replicas: who else is
    HGETALL <window>                the current minute, day and month: every key's totals

Keys (`{fleet}` is the fleet store's hash tag: one Cluster slot, one node, one pipeline):
`<prefix>:{fleet}:lim:m:<minute>` (fields `<client>|r`, `<client>|t`), `...:lim:d:<day>`,
`...:lim:mo:<month>` (field `<client>`: nano-dollars), `...:lim:replicas`, `...:lim:meta`.

A failed round trip puts the deltas back (`Counter.unsend`), marks the ledger unshared (each
replica then keeps to its share of every limit, `gateway.limits.counter.share`, until a round
trip goes through again) and replaces the client. One that timed out but ran on the server
anyway is counted twice: an overcount, never an undercount.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from gateway.limits.counter import Counter
from gateway.limits.ledger import Ledger
from gateway.limits.windows import DAY_S, MINUTE_S, Span, Window
from health import redis_conn
from health.settings import FleetSettings

log = logging.getLogger("turnout.limits")

REPLICA_SEEN_S = 10.0  # a replica counts for the share while it synced this recently
_TTL_S = {Span.MINUTE: int(3 * MINUTE_S), Span.DAY: int(2 * DAY_S), Span.MONTH: int(32 * DAY_S)}


class Keys:
    def __init__(self, prefix: str) -> None:
        self.base = f"{prefix}:{{fleet}}:lim"
        self.meta = f"{self.base}:meta"
        self.replicas = f"{self.base}:replicas"

    def window(self, w: Window) -> str:
        return f"{self.base}:{w.span.value}:{w.epoch}"


class LimitSync:
    def __init__(
        self,
        ledger: Ledger,
        fleet: FleetSettings,
        *,
        replica_id: str | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.ledger = ledger
        self.fleet = fleet
        self.keys = Keys(fleet.prefix)
        self.replica_id = replica_id or uuid.uuid4().hex[:12]
        self._sleep = sleep
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._epoch = ""  # Redis's, as of the last round trip
        self._stale: list[str] = []  # replicas not seen for long: removed with the next trip
        self.degraded = False
        self.ticks = 0

    def connect(self) -> None:
        self._client, _ = redis_conn.connect(self.fleet.url, timeout_s=self.fleet.timeout_s)

    async def start(self) -> None:
        """Connect, sync once (bounded by the timeouts: ready unshared if Redis is away), then
        once per period in the background."""
        self.connect()
        await self.sync_once()
        self._task = asyncio.create_task(self._loop(), name="limits-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2.0)
        if self._client is not None:
            if not self.degraded:  # hand over the last period's counts (bounded)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.fleet.timeout_s * 3):
                        await self.tick()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await redis_conn.aclose(self._client)

    async def _loop(self) -> None:
        while True:
            await self._sleep(self.fleet.sync_period_s)
            await self.sync_once()

    async def sync_once(self) -> None:
        """One round trip; if it fails, the ledger is unshared until one goes through."""
        try:
            await self.tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self.degraded:
                log.warning(
                    "redis unavailable for limits: each replica keeps to its share (%s)",
                    type(exc).__name__,
                )
            self.degraded = True
            self.ledger.shared = False
            await self._renew()

    async def _renew(self) -> None:
        """A fresh client after a failed round trip: one cut short may have left its replies
        on a connection (seen on a cluster pipeline), where the next would read them."""
        old, self._client = self._client, None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await redis_conn.aclose(old)
        self.connect()

    async def tick(self) -> None:
        """One round trip: our deltas in, the fleet's totals out (raises if Redis fails)."""
        ledger = self.ledger
        if not ledger.meters:
            return  # no key has limits: nothing to share, no round trip
        async with asyncio.timeout(self.fleet.timeout_s * 3):
            await redis_conn.follow_master(self._client)  # Sentinel: the master named now
        w = ledger.roll()
        windows = (w.minute, w.day, w.month)
        k = self.keys
        now_ms = int(ledger.wall() * 1000)
        pipe = self._client.pipeline(transaction=False)
        pipe.hsetnx(k.meta, "epoch", uuid.uuid4().hex)
        pipe.hget(k.meta, "epoch")
        sent: list[tuple[Counter, int]] = []
        written: set[Window] = set()
        for meter in ledger.meters.values():
            for c in meter.counters():
                amount = c.take()
                sent.append((c, amount))
                if amount:
                    pipe.hincrby(k.window(c.window), c.field, amount)
                    written.add(c.window)
        for win in written:
            pipe.expire(k.window(win), _TTL_S[win.span])
        pipe.hset(k.replicas, self.replica_id, now_ms)
        pipe.expire(k.replicas, int(REPLICA_SEEN_S * 6))
        if self._stale:
            pipe.hdel(k.replicas, *self._stale)
        pipe.hgetall(k.replicas)
        for win in windows:
            pipe.hgetall(k.window(win))
        try:
            async with asyncio.timeout(self.fleet.timeout_s * 1.5):
                result: list[Any] = await pipe.execute()
        except BaseException:
            for c, _ in sent:
                c.unsend()
            raise
        epoch = _text(result[1])
        totals = {win: _totals(fields) for win, fields in zip(windows, result[-3:], strict=True)}
        came_back_empty = bool(self._epoch) and epoch != self._epoch
        for c, amount in sent:
            if c.window in totals:  # else it rolled over meanwhile: that window is over
                c.settle(totals[c.window].get(c.field, 0))
                if came_back_empty:
                    c.resend(amount)
            else:
                c.sending = 0
        if came_back_empty:
            log.warning("redis came back empty: re-sending this replica's limit counts")
        self._epoch = epoch
        self._count_replicas(result[-4], now_ms)
        if self.degraded:
            log.info("redis reachable again for limits: the fleet's totals are shared")
        self.degraded = False
        ledger.shared = True
        self.ticks += 1

    def _count_replicas(self, seen: Any, now_ms: int) -> None:
        live, stale = 0, []
        for rid, at in (seen or {}).items():
            try:
                fresh = now_ms - int(at) <= REPLICA_SEEN_S * 1000
            except ValueError:
                fresh = False
            if fresh:
                live += 1
            else:
                stale.append(_text(rid))
        self._stale = stale
        self.ledger.replicas = max(1, live)


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _totals(fields: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in (fields or {}).items():
        with contextlib.suppress(ValueError):
            out[_text(name)] = max(0, int(value))
    return out
