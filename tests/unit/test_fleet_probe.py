"""The probe lock's books (health/fleet_probe.py), in virtual time: what a replica claims,
keeps, renews and gives back. The scripts themselves run against real Redis in
tests/e2e/test_fleet_store_faults.py."""

from __future__ import annotations

from health.breaker import Admission, BreakerState
from health.fleet_event import Keys
from health.fleet_probe import CLAIM, DEMAND_S, UNLOCK, ProbeLocks


class Pipe:
    """What a pipeline was asked to send (the Redis side is not ours to fake here)."""

    def __init__(self) -> None:
        self.sent: list[tuple[object, ...]] = []

    def eval(self, script: str, n: int, *args: object) -> None:
        self.sent.append(
            ("claim" if script == CLAIM else "unlock" if script == UNLOCK else "?", *args)
        )

    def set(self, key: str, value: str, *, px: int) -> None:
        self.sent.append(("set", key, value, px))


def locks() -> ProbeLocks:
    return ProbeLocks(Keys("t"), "me", lock_s=30.0, period_s=0.25)


def probe_wanted(_: str) -> Admission:
    return Admission.PROBE


def test_a_wish_is_claimed_once_a_period_and_forgotten_after_a_while() -> None:
    pl = locks()
    assert pl.want("a", 0.0)  # due: wake the sync loop
    assert pl.claimable(0.0, probe_wanted) == ["a"]
    pipe = Pipe()
    pl.queue_claims(pipe, ["a"], 0.0)
    assert pipe.sent == [("claim", "t:{a}:probe", "me", 30_000)]
    pl.settle_claims(["a"], [0])  # another replica has it
    assert not pl.want("a", 0.1) and pl.claimable(0.1, probe_wanted) == []  # not this period
    assert pl.claimable(0.3, probe_wanted) == ["a"]
    assert pl.claimable(0.3, lambda _: Admission.DENY) == []  # no longer half-open here
    assert pl.claimable(0.1 + DEMAND_S, probe_wanted) == []  # nobody asked for a while


def test_the_winner_keeps_the_lock_for_every_probe_and_gives_it_back_on_a_failure() -> None:
    pl = locks()
    pl.want("a", 0.0)
    pl.queue_claims(Pipe(), ["a"], 0.0)
    pl.settle_claims(["a"], [1])
    assert pl.held == {"a"}
    pl.probed("a", BreakerState.HALF_OPEN)  # one success of two: keep it, renewed
    pipe = Pipe()
    renews = pl.queue_flush(pipe, closing=False)
    assert renews == ["a"] and pipe.sent == [("claim", "t:{a}:probe", "me", 30_000)]
    pl.settle_renewals(renews, [1])
    assert pl.held == {"a"}
    pl.probed("a", BreakerState.OPEN)  # the probe failed: the lock goes back
    pipe = Pipe()
    assert pl.queue_flush(pipe, closing=False) == []
    assert pipe.sent == [("unlock", "t:{a}:probe", "me")] and pl.held == set()


def test_a_close_holds_the_lock_a_little_and_a_lost_renewal_is_not_ours() -> None:
    pl = locks()
    pl.settle_claims(["a", "b"], [1, 1])
    pl.probed("a", BreakerState.CLOSED)  # recovered: no unlock (the close holds it)
    pipe = Pipe()
    pl.hold(pipe, "a")
    assert pipe.sent == [("set", "t:{a}:probe", "me", 1000)]  # 4 periods
    pl.probed("b", BreakerState.HALF_OPEN)
    renews = pl.queue_flush(Pipe(), closing=False)
    pl.settle_renewals(renews, [0])  # it expired and someone else took it
    assert pl.held == set() and not pl.pending


def test_a_closing_replica_gives_every_lock_back() -> None:
    pl = locks()
    pl.settle_claims(["a", "b"], [1, 1])
    pl.probed("a", BreakerState.HALF_OPEN)
    pipe = Pipe()
    assert pl.queue_flush(pipe, closing=True) == []  # nothing renewed on the way out
    assert sorted(pipe.sent) == [("unlock", "t:{a}:probe", "me"), ("unlock", "t:{b}:probe", "me")]
    assert pl.held == set()
