"""Adaptive first-byte and idle limits: a target's own p95 time to first token, not a fixed
number, decides when its stream is late (`timeouts.adaptive`, off by default).

    limit = clamp(factor x p95, floor_s, cap_s)

replaces `headers_s`, `first_token_s` and `idle_s` (a stream's headers cannot be later than
its first token) for every candidate but the last one a request can try,
which keeps at least its fixed limits (it has no fallback behind it: waiting costs nothing
that failing over would save). A target with no samples yet gets its fixed limits. Pure: the
p95 comes in (the health store's cached one, `HealthStore.first_token_p95_s`).
"""

from __future__ import annotations

import dataclasses

from gateway.config.model import Timeouts


def adaptive_limit_s(t: Timeouts, p95_s: float) -> float:
    a = t.adaptive
    return min(a.cap_s, max(a.floor_s, a.factor * p95_s))


def adapted(t: Timeouts, p95_s: float | None, *, final: bool) -> Timeouts:
    """`t` with its first-token and idle limits from `p95_s` (seconds), when adaptive."""
    if not t.adaptive.enabled or p95_s is None:
        return t
    limit = adaptive_limit_s(t, p95_s)
    if final:  # grace: the fixed limits unless the adaptive ones are longer
        headers = max(t.headers_s, limit)
        first, idle = max(t.first_token_s, limit), max(t.idle_s, limit)
    else:
        headers = first = idle = limit
    if (headers, first, idle) == (t.headers_s, t.first_token_s, t.idle_s):
        return t
    return dataclasses.replace(t, headers_s=headers, first_token_s=first, idle_s=idle)
