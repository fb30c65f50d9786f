"""The fleet store: local health in memory, shared with every replica through Redis.

The request path (snapshot/acquire/release) only touches memory. Background tasks do the I/O:

- *push*: a local trip, recovery or throttle is written at once (a key whose TTL is the
  remaining duration, plus a pub/sub message);
- *reconcile*: every `sync_period_s` one pipelined round trip flushes window deltas and reads
  every target's fleet state, so a lost pub/sub message is repaired within a period;
- *subscribe*: peers' events are applied as they arrive; PING notices a dead subscription;
- *probe lock*: in half-open, only the replica holding the probe key may probe (fleet_probe).

When Redis is down, slow or paused, every round trip is cut short by a timeout, the store
reports itself degraded and the replica runs on its local view (probing locally); when Redis
returns, local opens are re-published (resync) and the fleet converges again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from health import fleet_learned, fleet_sync, redis_conn
from health.breaker import Admission, BreakerState, TransitionLog
from health.clock import Clock, MonotonicClock
from health.fleet_event import EventKind, FleetEvent, Keys
from health.fleet_probe import ProbeLocks
from health.fleet_pubsub import check_cancelled, subscribe_forever
from health.fleet_view import apply_event, reconcile
from health.learned import Space
from health.memory import MemoryStore
from health.outcome import Outcome, OutcomeKind
from health.redis_conn import connect, describe, follow_master
from health.settings import FleetSettings, HealthSettings
from health.store import HealthSnapshot, Permit, StoreStatus

__all__ = ["FleetSettings", "FleetStore"]

log = logging.getLogger("turnout.health.fleet")


class FleetStore:
    def __init__(
        self,
        fleet: FleetSettings,
        settings: HealthSettings | None = None,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        replica_id: str | None = None,
    ) -> None:
        self.fleet = fleet
        self.settings = settings or HealthSettings()
        self._clock = clock or MonotonicClock()  # this replica's decisions
        # The fleet's shared time base: window buckets are compared across
        # machines, whose monotonic clocks have nothing in common.
        self._wall = wall
        self.local = MemoryStore(self.settings, clock=self._clock, shared_learning=True)
        self.replica_id = replica_id or uuid.uuid4().hex[:12]
        self.keys = Keys(fleet.prefix)
        self._outbox: list[FleetEvent] = []
        self._deltas: dict[tuple[str, int], list[int]] = {}
        self.probes = ProbeLocks(
            self.keys, self.replica_id, lock_s=fleet.probe_lock_s, period_s=fleet.sync_period_s
        )
        self._dirty: dict[str, float] = {}  # target -> last local event (skip stale readings)
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._master_moved = asyncio.Event()  # resubscribe on the new master (Sentinel)
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._sub_client: Any = None
        self._pubsub_ok = True
        self._degraded = True
        self._detail = "not connected yet"
        self._resync = True
        self._state = fleet_sync.StateView()  # the fleet's breaker records, as of the last tick
        self._windows = fleet_sync.WindowCache()
        self._last_ok = 0.0
        self._closing = False

    # -- the request path: memory only ---------------------------------------------------------

    def track(self, target_ids: Iterable[str]) -> None:
        self.local.track(target_ids)

    def snapshot(
        self, target_ids: Iterable[str], *, detailed: bool = False, availability: bool = False
    ) -> HealthSnapshot:
        return self.local.snapshot(target_ids, detailed=detailed, availability=availability)

    def plain(self, target_ids: Iterable[str]) -> bool:
        return self.local.plain(target_ids)

    def admission(self, target_id: str) -> Admission:
        verdict = self.local.admission(target_id)
        if verdict is Admission.PROBE and self._coordinated and target_id not in self.probes.held:
            return Admission.DENY
        return verdict

    def warmth(self, target_id: str) -> float:
        return self.local.warmth(target_id)  # a recovery the fleet adopted ramps here too

    def acquire(self, target_id: str) -> Permit | None:
        now = self._clock.now()
        sig = self.local.signals(target_id)
        coordinated = self._coordinated and target_id not in self.probes.held
        if coordinated and sig.peek(now) is Admission.PROBE:
            if self.probes.want(target_id, now):  # the sync loop tries for the fleet's lock
                self._wake.set()
            return None
        # With the fleet's probe lock, this replica makes every probe of the recovery (the
        # lock stays with it until the breaker closes or a probe fails): K probes, one prober.
        return self.local.acquire(target_id)

    def force_acquire(self, target_id: str) -> Permit:
        return self.local.force_acquire(target_id)

    def heard(self, target_id: str) -> None:
        self.local.heard(target_id)  # not shared: in-flight counts are local too

    def first_token_p95_s(self, target_id: str) -> float | None:
        return self.local.first_token_p95_s(target_id)

    def release(self, permit: Permit, outcome: Outcome) -> None:
        tid = permit.target_id
        sig = self.local.signals(tid)
        before = sig.breaker.last_transition
        throttled_before = sig.throttled_until
        self.local.release(permit, outcome)
        now = self._clock.now()
        if permit.probe and self._coordinated:
            self.probes.probed(tid, sig.breaker.state(now))
        after = sig.breaker.last_transition
        if after is not None and after is not before:
            if after.to is BreakerState.OPEN and sig.breaker.origin == "local":
                left = (sig.breaker.open_until() or now) - now
                self._push(FleetEvent(EventKind.TRIP, tid, left, sig.breaker.trips, after.reason))
            elif after.to is BreakerState.CLOSED:
                self._push(FleetEvent(EventKind.CLOSE, tid, reason=after.reason))
        if sig.throttled_until > throttled_before:
            self._push(FleetEvent(EventKind.THROTTLE, tid, sig.throttled_until - now))
        if outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.PROVIDER_FAILURE):
            epoch = int(self._wall() // self.settings.bucket_s)
            counts = self._deltas.setdefault((tid, epoch), [0, 0])
            counts[0 if outcome.kind is OutcomeKind.SUCCESS else 1] += 1

    def _push(self, event: FleetEvent) -> None:
        self._dirty[event.target_id] = self._clock.now()
        self._outbox.append(event)
        self._wake.set()

    @property
    def _coordinated(self) -> bool:
        """Probes need the fleet lock only while Redis works; otherwise we probe locally."""
        return not self._degraded

    def learned(self, space: str) -> Space:
        return self.local.learned(space)  # shared at each reconciliation (health.fleet_learned)

    def retain_learned(self, spaces: Iterable[str]) -> None:
        self.local.retain_learned(spaces)

    @property
    def transitions(self) -> TransitionLog:
        """The local view's breakers log every transition, a peer's included."""
        return self.local.transitions

    def status(self) -> StoreStatus:
        return StoreStatus("redis", self._degraded, self._detail)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and read the fleet once, giving up after ~1 s: ready on local state if not."""
        self._client, pubsub = connect(self.fleet.url, timeout_s=self.fleet.timeout_s)
        pubsub = pubsub and self.fleet.pubsub
        self._pubsub_ok = pubsub
        if pubsub:
            self._sub_client, _ = connect(self.fleet.url, timeout_s=self.fleet.timeout_s)
        try:
            async with asyncio.timeout(1.0):
                await self._tick()
        except Exception as exc:  # Redis down at start: serve on local state
            self._failed(exc)
        self._tasks.append(asyncio.create_task(self._sync_loop(), name="fleet-sync"))
        if pubsub:
            self._tasks.append(asyncio.create_task(self._subscribe_loop(), name="fleet-sub"))
            if not self._degraded:
                # Ready means subscribed: a peer's trip right after start is not missed.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._subscribed.wait()

    async def close(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        # Everything here is bounded: a stop must never wait on a Redis that misbehaves.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks.clear()
        if not self._degraded and self._client is not None:
            # hand over the last period's news and learning (a rolling restart loses nothing)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.fleet.timeout_s * 3):
                    if self._outbox or self.probes.pending or self.probes.held:
                        await self._flush()
                    await self._tick()
        for c in (self._client, self._sub_client):
            if c is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await redis_conn.aclose(c)

    # -- background ------------------------------------------------------------------------------

    def _ok(self) -> None:
        if self._degraded:
            log.info("redis fleet store connected (%s)", describe(self.fleet.url))
            self._resync = True  # re-publish what we learned alone
        self._degraded = False
        self._detail = ""
        self._last_ok = self._clock.now()

    def _failed(self, exc: BaseException) -> None:
        if not self._degraded:
            log.warning("redis degraded, serving on local health: %s", type(exc).__name__)
            # The fleet's window froze when Redis went away: report it as absent (policies
            # then rank by local signals) rather than go on ranking by a stale reading.
            for tid in self.local.target_ids():
                self.local.signals(tid).fleet_window = None
        self._degraded = True
        self._detail = f"redis unavailable: {type(exc).__name__}"

    async def _round_trip(self, pipe: Any) -> list[Any]:
        async with asyncio.timeout(self.fleet.timeout_s * 1.5):
            result: list[Any] = await pipe.execute()
            return result

    async def _sync_loop(self) -> None:
        next_tick = self._clock.now() + self.fleet.sync_period_s
        while True:
            wait = max(0.0, next_tick - self._clock.now())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            check_cancelled()
            self._wake.clear()
            try:
                if self._outbox or self.probes.pending:
                    await self._flush()
                if self._clock.now() >= next_tick:
                    next_tick = self._clock.now() + self.fleet.sync_period_s
                    await self._tick()
                elif self._claimable():
                    await self._claim_probes()  # demand between ticks: only the lock, not a tick
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                check_cancelled()
                self._failed(exc)
                await asyncio.sleep(self.fleet.sync_period_s)

    async def _flush(self) -> None:
        events, self._outbox = self._outbox, []
        k = self.keys
        pipe = self._client.pipeline(transaction=False)
        if events:  # one script writes them all into the state hash
            args: list[object] = [int(self.fleet.half_open_grace_s * 1000)]
            for ev in events:
                args += [ev.kind.value, ev.target_id, max(1, int(ev.duration_s * 1000)), ev.trips]
            pipe.eval(fleet_sync.WRITE, 3, k.state, k.changes, k.meta, *args)
        for ev in events:
            if ev.kind is EventKind.CLOSE:
                self.probes.hold(pipe, ev.target_id)
            if self._pubsub_ok:  # else peers learn it by reconciliation, nobody listens
                ev = FleetEvent(
                    ev.kind, ev.target_id, ev.duration_s, ev.trips, ev.reason, self.replica_id
                )
                pipe.publish(k.channel, ev.encode())
        renews = self.probes.queue_flush(pipe, closing=self._closing)
        result = await self._round_trip(pipe)
        self.probes.settle_renewals(renews, result[len(result) - len(renews) :])
        self._ok()

    def _claimable(self) -> list[str]:
        return self.probes.claimable(self._clock.now(), self.local.admission)

    async def _follow_master(self) -> None:
        """Sentinel: on the master the Sentinels name now, within one period of a failover."""
        async with asyncio.timeout(self.fleet.timeout_s * 3):
            if not await follow_master(self._client):
                return
            log.warning("redis master moved (%s): following it", describe(self.fleet.url))
            if self._sub_client is not None:
                await follow_master(self._sub_client)
        self._master_moved.set()
        # What we wrote to the old master since the switch is not on the new one: re-publish,
        # and read the new master's state afresh.
        self._resync = True
        self._state.forget()

    async def _tick(self) -> None:
        await self._follow_master()
        k = self.keys
        bucket = self.settings.bucket_s
        n_buckets = max(1, round(self.settings.window_s / bucket))
        current = int(self._wall() // bucket)
        epochs = list(range(current - n_buckets + 1, current + 1))
        targets = sorted(self.local.target_ids())
        deltas, self._deltas = self._deltas, {}
        pipe = self._client.pipeline(transaction=False)
        ttl_s = int(self.settings.window_s + 2 * bucket + 1)
        n = 0
        written: set[int] = set()
        for (tid, epoch), (s, f) in deltas.items():
            for field, count in (("s", s), ("f", f)):
                if count:
                    pipe.hincrby(k.window(epoch), f"{tid}|{field}", count)
                    n += 1
            written.add(epoch)
        for epoch in written:
            pipe.expire(k.window(epoch), ttl_s)
            n += 1
        learned = self.local.book.drain()
        learned_at = n
        spaces = fleet_learned.queue(pipe, k, learned, fleet_learned.DEFAULT_TTL_S)
        n += len(spaces)
        # The state records changed since our last tick (none, mostly), Redis's epoch (named
        # by whichever replica finds it missing: a new one means Redis came back empty, and
        # every replica re-publishes what it knows) and the server's clock.
        state_at = n
        if self._degraded:
            self._state.forget()  # back from an outage: Redis may hold anything now
        state_args = self._state.args(uuid.uuid4().hex, self._clock.now())
        pipe.eval(fleet_sync.TICK, 3, k.state, k.changes, k.meta, *state_args)
        reads = self._windows.to_read(epochs)
        for epoch in reads:
            pipe.hgetall(k.window(epoch))
        started = self._clock.now()
        try:
            result = await self._round_trip(pipe)
        except BaseException:
            self._merge_back(deltas)
            self.local.book.unsend(learned)
            raise
        fleet_learned.settle(self.local.book, spaces, result[learned_at : learned_at + len(spaces)])
        if self._state.absorb(result[state_at], self._clock.now()):
            self._resync = True
        for epoch, fields in zip(reads, result[state_at + 1 :], strict=True):
            self._windows.absorb(epoch, fields)
        was_degraded = self._degraded
        self._ok()
        resync = self._resync or was_degraded
        self._resync = False
        now = self._clock.now()
        now_ms = self._state.now_ms
        republish: list[FleetEvent] = []
        for tid in targets:
            if self._dirty.get(tid, 0.0) >= started - self.fleet.sync_period_s:
                continue  # our own news is in flight: this reading may predate it
            record = self._state.record(tid)
            reading = record.reading(tid, now_ms, self._windows.counts(tid, epochs))
            sig = self.local.signals(tid)
            republish.extend(reconcile(sig, reading, now, self.settings.breaker, resync=resync))
        for ev in republish:
            self._push(ev)
        await self._claim_probes()

    def _merge_back(self, deltas: dict[tuple[str, int], list[int]]) -> None:
        for key, (s, f) in deltas.items():
            counts = self._deltas.setdefault(key, [0, 0])
            counts[0] += s
            counts[1] += f

    async def _claim_probes(self) -> None:
        if self._closing:
            return  # a lock taken now would keep the fleet from probing until it expires
        wanted = self._claimable()
        if not wanted:
            return
        pipe = self._client.pipeline(transaction=False)
        self.probes.queue_claims(pipe, wanted, self._clock.now())
        self.probes.settle_claims(wanted, await self._round_trip(pipe))

    async def _subscribe_loop(self) -> None:
        await subscribe_forever(
            self._sub_client,
            self.keys.channel,
            self._on_message,
            subscribed=self._subscribed,
            restart=self._master_moved,
            clock=self._clock,
            timeout_s=self.fleet.timeout_s,
            retry_s=self.fleet.sync_period_s,
            ping_s=self.fleet.heartbeat_s,
            silent_after_s=3 * self.fleet.heartbeat_s,
        )

    def _on_message(self, data: bytes | str) -> None:
        event = FleetEvent.decode(data)
        if event is None or event.replica == self.replica_id or event.kind is EventKind.HEARTBEAT:
            return
        apply_event(self.local.signals(event.target_id), event, self._clock.now())
