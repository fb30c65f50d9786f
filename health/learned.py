"""What learning policies learned, kept beside health so the fleet can share it.

A learning policy (`adaptive`) keeps, per target, two decayed sums of rewards in [0, 1]:
`successes` (S) and `failures` (F). One observation with reward r and decay g does

    S <- g*S + r        F <- g*F + (1 - r)

so n observations in a row fold into one batch `(g^n, sum, sum)`: S <- g^n*S + dS. That is
what makes sharing cheap and order-tolerant: each replica sends its batch since the last sync,
the fleet store folds it into the shared sums atomically, and reads the result back.

A `Book` holds every *space* (one per route whose policy learns, named by its route key) in
memory; the request path only touches it (`evidence`, `add`). The fleet store `drain`s what
was learned since the last sync and `settle`s the fleet's sums back in. Without a fleet store
the book alone is the memory: it outlives config reloads, so a reload keeps what was learned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Evidence:
    """Decayed sums of rewards (successes) and of their complements (failures)."""

    successes: float = 0.0
    failures: float = 0.0


NO_EVIDENCE = Evidence()


@dataclass(frozen=True, slots=True)
class Batch:
    """Observations folded together: apply as S <- factor*S + successes (same for F)."""

    factor: float = 1.0
    successes: float = 0.0
    failures: float = 0.0
    count: int = 0

    def add(self, reward: float, decay: float) -> Batch:
        r = min(1.0, max(0.0, reward))
        return Batch(
            self.factor * decay,
            decay * self.successes + r,
            decay * self.failures + (1.0 - r),
            self.count + 1,
        )

    def then(self, later: Batch) -> Batch:
        """This batch followed by `later`, as one batch."""
        return Batch(
            self.factor * later.factor,
            later.factor * self.successes + later.successes,
            later.factor * self.failures + later.failures,
            self.count + later.count,
        )

    def apply(self, e: Evidence) -> Evidence:
        return Evidence(
            self.factor * e.successes + self.successes, self.factor * e.failures + self.failures
        )


EMPTY = Batch()


class Space:
    """One route's learned evidence per target. `base` is the last known total (the fleet's,
    with a fleet store), `pending` what this process learned since it was last drained.
    Not `shared`: nothing will drain it, so observations fold into `base` at once."""

    __slots__ = ("base", "pending", "shared", "unsent")

    def __init__(self, *, shared: bool = False) -> None:
        self.shared = shared
        self.base: dict[str, Evidence] = {}
        self.pending: dict[str, Batch] = {}
        self.unsent: dict[str, Batch] = {}  # drained, already in `base`, not yet shared

    def evidence(self, target_id: str) -> Evidence:
        e = self.base.get(target_id, NO_EVIDENCE)
        b = self.pending.get(target_id)
        return e if b is None else b.apply(e)

    def add(self, target_id: str, reward: float, decay: float) -> None:
        if self.shared:
            self.pending[target_id] = self.pending.get(target_id, EMPTY).add(reward, decay)
        else:
            batch = EMPTY.add(reward, decay)
            self.base[target_id] = batch.apply(self.base.get(target_id, NO_EVIDENCE))

    def targets(self) -> list[str]:
        return sorted(self.base.keys() | self.pending.keys())


class Book:
    """Every space of this process (`shared`: a fleet store drains and settles them)."""

    def __init__(self, *, shared: bool = False) -> None:
        self._spaces: dict[str, Space] = {}
        self._shared = shared

    def space(self, name: str) -> Space:
        s = self._spaces.get(name)
        if s is None:
            s = self._spaces[name] = Space(shared=self._shared)
        return s

    def names(self) -> list[str]:
        return list(self._spaces)

    def retain(self, names: Iterable[str]) -> None:
        """Forget the spaces not named (their routes are gone or no longer learn): they are
        no longer synced, and the fleet's copy expires once no replica refreshes it."""
        keep = set(names)
        for name in [n for n in self._spaces if n not in keep]:
            del self._spaces[name]

    def drain(self) -> dict[str, dict[str, tuple[Batch, Evidence]]]:
        """What to send to the fleet: per space, per known target, the batch not yet shared
        (EMPTY if none) and this process's estimate of the total, which seeds the fleet's sums
        when Redis lost them (restarted empty, expired). Pending batches move into `base`."""
        out: dict[str, dict[str, tuple[Batch, Evidence]]] = {}
        for name, s in self._spaces.items():
            batches = dict(s.unsent)
            for tid, b in s.pending.items():
                s.base[tid] = b.apply(s.base.get(tid, NO_EVIDENCE))
                batches[tid] = batches[tid].then(b) if tid in batches else b
            s.pending, s.unsent = {}, {}
            out[name] = {
                tid: (batches.get(tid, EMPTY), s.base.get(tid, NO_EVIDENCE))
                for tid in s.base.keys() | batches.keys()
            }
        return out

    def unsend(self, drained: Mapping[str, Mapping[str, tuple[Batch, Evidence]]]) -> None:
        """The fleet did not get `drained`: keep it for the next sync (it stays counted here).
        A space forgotten meanwhile (a reload during the round trip) stays forgotten."""
        for name, shares in drained.items():
            s = self._spaces.get(name)
            if s is None:
                continue
            for tid, (b, _) in shares.items():
                if b.count:
                    s.unsent[tid] = b.then(s.unsent[tid]) if tid in s.unsent else b

    def settle(self, space: str, fleet: Mapping[str, Evidence]) -> None:
        """The fleet's sums after our drained batches were folded in: they become the base;
        what was learned since the drain stays pending on top."""
        s = self._spaces.get(space)
        if s is not None:  # else forgotten during the round trip: stays forgotten
            s.base = dict(fleet)
