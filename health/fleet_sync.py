"""What one reconciliation reads and writes, so that its cost grows with changes, not targets.

The fleet's breaker state lives in one hash (`Keys.state`): a record per target, absolute
times on the Redis server's clock (so no replica's clock skew stretches them); `Keys.meta`
holds the state's version and Redis's epoch; a sorted set (`Keys.changes`) holds each target's version of its last change. A tick
sends one script (`TICK`) with the version this replica saw last and gets back only the records
changed since - nothing while nothing happens - plus the server's time, against which every
remembered record is read again (an open that ran out is seen to run out without a read).
Events are written by one script too (`WRITE`).

The rolling error-rate window lives in one hash per bucket (`Keys.window`, fields `tid|s` and
`tid|f`): a tick adds its deltas with HINCRBY and reads only the buckets still being written
(the current and the previous one); closed buckets are remembered (`WindowCache`).

Every key is in the `{fleet}` hash slot: the scripts may touch them together on a Redis
Cluster too (one node serves the fleet; at 1,000 replicas x 50 targets that is well within
one core: ops/bench/fleet.py's load model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from health.fleet_view import FleetReading
from health.window import WindowCounts

# Redis 6 allows TIME before a write in a script only with effects replication, asked for;
# Redis 7 always replicates effects (the call is still there, deprecated: harmless).
_EFFECTS = "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"

# KEYS: state, changes, meta. ARGV: half-open grace ms, then (kind, target, duration ms, trips) each.
WRITE = (
    _EFFECTS
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[1])
for i = 2, #ARGV, 4 do
  local kind, tid = ARGV[i], ARGV[i + 1]
  local dur, trips = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local o, h, n, th = 0, 0, 0, 0
  local rec = redis.call('HGET', KEYS[1], tid)
  if rec then
    local f = {}
    for x in string.gmatch(rec, '[^,]+') do f[#f + 1] = tonumber(x) or 0 end
    o, h, n, th = f[1] or 0, f[2] or 0, f[3] or 0, f[4] or 0
  end
  if kind == 'trip' then
    o = math.max(o, now + dur)
    h = math.max(h, o + grace)
    n = math.max(n, trips)
  elseif kind == 'close' then
    o, h, n = 0, 0, 0
  elseif kind == 'throttle' then
    th = math.max(th, now + dur)
  end
  local v = redis.call('HINCRBY', KEYS[3], 'v', 1)
  redis.call('HSET', KEYS[1], tid, string.format('%d,%d,%d,%d', o, h, n, th))
  redis.call('ZADD', KEYS[2], v, tid)
end
return 1
"""
)

# KEYS: state, changes, meta. ARGV: version seen last, epoch we know, an epoch to name if none.
# Returns {epoch, version, server ms, full (0/1), target, record, target, record...}.
TICK = """
redis.call('HSETNX', KEYS[3], 'epoch', ARGV[3])
local epoch = redis.call('HGET', KEYS[3], 'epoch')
local v = tonumber(redis.call('HGET', KEYS[3], 'v') or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = tonumber(ARGV[1])
local full = epoch ~= ARGV[2] or since < 0 or since > v
local out = {epoch, v, now, full and 1 or 0}
if full then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all do out[#out + 1] = all[i] end
elseif since < v then
  local changed = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. since, '+inf')
  for i = 1, #changed do
    out[#out + 1] = changed[i]
    out[#out + 1] = redis.call('HGET', KEYS[1], changed[i]) or ''
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Record:
    """A target's fleet state, in the Redis server's milliseconds (0: none)."""

    open_until: int = 0
    half_open_until: int = 0  # the marker: outlives the open while the fleet probes
    trips: int = 0
    throttle_until: int = 0

    @staticmethod
    def decode(raw: bytes | str | None) -> Record:
        """A stored record; junk reads as nothing (never fatal)."""
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", "replace")
        if not raw:
            return EMPTY
        try:
            o, h, n, th = (int(x) for x in raw.split(","))
        except ValueError:
            return EMPTY
        return Record(max(0, o), max(0, h), min(max(0, n), 64), max(0, th))

    def reading(self, target_id: str, now_ms: int, window: WindowCounts) -> FleetReading:
        half_open = self.half_open_until > now_ms
        return FleetReading(
            target_id,
            self.open_until - now_ms if self.open_until > now_ms else None,
            half_open,
            self.throttle_until - now_ms if self.throttle_until > now_ms else None,
            window,
            self.trips if half_open else 0,
        )


EMPTY = Record()

# Every replica reads the whole state this often anyway: a record Redis lost without its
# version or epoch showing it (a restore, a failover to a replica that missed a write and
# then took new ones) is noticed - and re-published by its owner - within this time.
FULL_READ_S = 10.0


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class StateView:
    """This replica's copy of the state hash, kept up to date by the tick's changes."""

    __slots__ = ("epoch", "full_at", "now_ms", "records", "version")

    def __init__(self) -> None:
        self.epoch = ""  # "" until the first reading: the first tick reads everything
        self.version = -1
        self.now_ms = 0
        self.full_at = -1e9  # when (store clock) the last full reading came
        self.records: dict[str, Record] = {}

    def forget(self) -> None:
        """The next tick reads every record (Redis may have lost or changed some)."""
        self.version = -1

    def args(self, new_epoch: str, now_s: float) -> tuple[int, str, str]:
        if now_s - self.full_at >= FULL_READ_S:
            self.forget()
        return self.version, self.epoch, new_epoch

    def absorb(self, reply: Sequence[object], now_s: float) -> bool:
        """Take a TICK reply in; True when Redis's epoch changed (it came back empty, or
        another Redis: re-publish what we know)."""
        epoch, version, now_ms, full = _text(reply[0]), reply[1], reply[2], reply[3]
        assert isinstance(version, int) and isinstance(now_ms, int) and isinstance(full, int)
        changed = bool(self.epoch) and epoch != self.epoch
        if full:
            self.records = {}
            self.full_at = now_s
        for i in range(4, len(reply) - 1, 2):
            self.records[_text(reply[i])] = Record.decode(reply[i + 1])  # type: ignore[arg-type]
        self.epoch, self.version, self.now_ms = epoch, version, now_ms
        return changed

    def record(self, target_id: str) -> Record:
        return self.records.get(target_id, EMPTY)


class WindowCache:
    """The fleet's window buckets: closed ones remembered, open ones read every tick."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[int, dict[str, list[int]]] = {}

    def to_read(self, epochs: Sequence[int]) -> list[int]:
        """The buckets to read this tick: the last two (still written: a replica flushes its
        deltas up to a period late) and any we have not seen."""
        keep = set(epochs)
        for e in [e for e in self._buckets if e not in keep]:
            del self._buckets[e]
        live = set(epochs[-2:])
        return [e for e in epochs if e in live or e not in self._buckets]

    def absorb(self, epoch: int, fields: Mapping[bytes | str, bytes | str]) -> None:
        bucket: dict[str, list[int]] = {}
        for name, value in fields.items():
            tid, _, kind = _text(name).rpartition("|")
            try:
                count = max(0, int(value))
            except ValueError:
                continue
            if kind in ("s", "f"):
                bucket.setdefault(tid, [0, 0])[0 if kind == "s" else 1] = count
        self._buckets[epoch] = bucket

    def counts(self, target_id: str, epochs: Iterable[int]) -> WindowCounts:
        s = f = 0
        for e in epochs:
            c = self._buckets.get(e, {}).get(target_id)
            if c is not None:
                s += c[0]
                f += c[1]
        return WindowCounts(s, f)

    def clear(self) -> None:
        self._buckets.clear()
