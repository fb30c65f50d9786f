"""Sharing what learning policies learned (`health.learned`) through Redis.

One hash per space (route), fields `{target}|s` and `{target}|f`: the fleet's decayed sums.
Each reconciliation round trip sends, per space and target, the batch learned since the last
one and this replica's estimate of the total; a Lua script folds each batch in (S <- factor*S
+ dS, atomically, so replicas never lose each other's updates), or, where Redis has no sums
(restarted empty, expired), seeds them with the estimate, and returns the whole hash, which
becomes every replica's base. The hash expires after `ttl_s` with no replica using the route.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from health.fleet_event import Keys
from health.learned import Batch, Book, Evidence

# KEYS[1]: the space's hash. ARGV[1]: TTL (ms); then per target: id, factor, dS, dF, and the
# replica's estimate of S and F (used only where the hash has no sums for the target).
FOLD = """
local key = KEYS[1]
local function sum(field)
  -- a field that is missing, not a number, negative or not finite reads as missing (a
  -- foreign write must not make the script fail: the whole round trip would be re-sent)
  local v = tonumber(redis.call('HGET', key, field))
  if v == nil or v ~= v or v < 0 or v == math.huge then return nil end
  return v
end
for i = 2, #ARGV, 6 do
  local t = ARGV[i]
  local factor, ds, df = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local s, f = sum(t .. '|s'), sum(t .. '|f')
  if s == nil or f == nil then
    s, f = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  elseif factor ~= 1 or ds ~= 0 or df ~= 0 then
    s = factor * s + ds
    f = factor * f + df
  else
    s = nil
  end
  if s then
    redis.call('HSET', key, t .. '|s', string.format('%.17g', s), t .. '|f', string.format('%.17g', f))
  end
end
if #ARGV > 1 then redis.call('PEXPIRE', key, ARGV[1]) end
return redis.call('HGETALL', key)
"""

DEFAULT_TTL_S = 7 * 24 * 3600.0


def queue(
    pipe: Any,
    keys: Keys,
    drained: Mapping[str, Mapping[str, tuple[Batch, Evidence]]],
    ttl_s: float,
) -> list[str]:
    """Add one script call per space to `pipe`; the spaces, in the order of their replies."""
    spaces = sorted(drained)
    ttl_ms = str(int(ttl_s * 1000))
    for space in spaces:
        args: list[str] = [ttl_ms]
        for tid, (b, e) in sorted(drained[space].items()):
            args += [tid, repr(b.factor), repr(b.successes), repr(b.failures)]
            args += [repr(e.successes), repr(e.failures)]
        pipe.eval(FOLD, 1, keys.learned(space), *args)
    return spaces


def parse(reply: Sequence[Any]) -> dict[str, Evidence]:
    """HGETALL's flat [field, value, ...] reply -> target -> evidence (bad fields skipped)."""
    sums: dict[str, list[float]] = {}
    for raw_field, raw_value in zip(reply[0::2], reply[1::2], strict=True):
        field = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
        tid, sep, which = field.rpartition("|")
        if not sep or which not in ("s", "f"):
            continue
        try:
            value = float(raw_value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value) or value < 0:  # not ours; inf would hang betavariate
            continue
        sums.setdefault(tid, [0.0, 0.0])[0 if which == "s" else 1] = value
    return {tid: Evidence(s, f) for tid, (s, f) in sums.items()}


def settle(book: Book, spaces: Sequence[str], replies: Sequence[Any]) -> None:
    for space, reply in zip(spaces, replies, strict=True):
        book.settle(space, parse(reply))
