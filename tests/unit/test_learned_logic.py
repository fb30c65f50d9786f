"""What learning policies learned, shared (`health.learned`): the batch algebra, the book's
drain/settle/unsend cycle with a simulated fleet, and `adaptive` learning through a shared
memory. Pure, no sockets: the fleet here is a dict folding batches like the Redis script."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from health.learned import EMPTY, NO_EVIDENCE, Batch, Book, Evidence
from policies.adaptive import Adaptive, AdaptiveParams
from policies.compose import observe, share
from policies.loading import build_policy
from policies.types import Candidate, Observation, RequestFeatures


def sequential(rewards: list[float], decay: float, start: Evidence = NO_EVIDENCE) -> Evidence:
    s, f = start.successes, start.failures
    for r in rewards:
        s, f = decay * s + r, decay * f + (1 - r)
    return Evidence(s, f)


def batch_of(rewards: list[float], decay: float) -> Batch:
    b = EMPTY
    for r in rewards:
        b = b.add(r, decay)
    return b


@pytest.mark.parametrize("decay", [1.0, 0.98, 0.7])
def test_a_batch_is_the_same_as_its_observations_one_by_one(decay: float) -> None:
    rng = random.Random(7)
    first = [rng.random() for _ in range(13)]
    later = [rng.random() for _ in range(8)]
    start = Evidence(3.0, 1.5)
    one_by_one = sequential(first + later, decay, start)
    b1, b2 = batch_of(first, decay), batch_of(later, decay)
    for folded in (b2.apply(b1.apply(start)), b1.then(b2).apply(start)):
        assert folded.successes == pytest.approx(one_by_one.successes)
        assert folded.failures == pytest.approx(one_by_one.failures)
    assert b1.then(b2).count == 21
    assert EMPTY.add(7.0, 1.0) == Batch(1.0, 1.0, 0.0, 1)  # rewards are clamped to [0, 1]


class Fleet:
    """What the Redis script does, in a dict: fold a batch, or seed where nothing is known."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, Evidence]] = {}
        self.up = True

    def sync(self, book: Book) -> None:
        drained = book.drain()
        if not self.up:
            book.unsend(drained)
            return
        for space, shares in drained.items():
            sums = self.sums.setdefault(space, {})
            for tid, (batch, estimate) in shares.items():
                sums[tid] = batch.apply(sums[tid]) if tid in sums else estimate
            book.settle(space, sums)


def replicas() -> tuple[Fleet, Book, Book]:
    """Two replicas' books with the route's space, as the runtime makes when it builds the
    route's policy."""
    a, b = Book(shared=True), Book(shared=True)
    a.space("r"), b.space("r")
    return Fleet(), a, b


def test_two_replicas_converge_on_the_sum_of_what_each_learned() -> None:
    fleet, a, b = replicas()
    for _ in range(30):
        a.space("r").add("x", 1.0, 1.0)
    for _ in range(20):
        b.space("r").add("x", 0.0, 1.0)
    assert a.space("r").evidence("x") == Evidence(30.0, 0.0)  # its own, before any sync
    fleet.sync(a)
    fleet.sync(b)
    fleet.sync(a)
    for book in (a, b):
        assert book.space("r").evidence("x") == Evidence(30.0, 20.0)
    b.space("r").add("x", 1.0, 1.0)  # learned after the last sync: counted here at once
    assert b.space("r").evidence("x") == Evidence(31.0, 20.0)
    assert a.space("r").evidence("x") == Evidence(30.0, 20.0)


def test_while_the_fleet_is_away_learning_goes_on_locally_and_is_sent_later_once() -> None:
    fleet, a, b = replicas()
    a.space("r").add("x", 1.0, 1.0)
    fleet.sync(a)
    fleet.up = False
    for _ in range(5):
        a.space("r").add("x", 1.0, 1.0)
        fleet.sync(a)  # fails: unsent, but still counted locally (once)
    assert a.space("r").evidence("x") == Evidence(6.0, 0.0)
    fleet.up = True
    fleet.sync(a)
    fleet.sync(b)
    assert a.space("r").evidence("x") == Evidence(6.0, 0.0)
    assert b.space("r").evidence("x") == Evidence(6.0, 0.0)


def test_a_fleet_that_lost_its_sums_is_seeded_from_what_replicas_know() -> None:
    fleet, a, b = replicas()
    for _ in range(10):
        a.space("r").add("x", 0.0, 1.0)
    fleet.sync(a)
    fleet.sync(b)
    fleet.sums.clear()  # Redis restarted empty
    b.space("r").add("x", 1.0, 1.0)
    fleet.sync(b)  # seeds with its estimate (10 failures + its new success), not just the new one
    fleet.sync(a)
    assert a.space("r").evidence("x") == Evidence(1.0, 10.0)
    assert b.space("r").evidence("x") == Evidence(1.0, 10.0)


def test_an_unshared_book_learns_at_once_and_has_nothing_to_send() -> None:
    book = Book()
    book.space("r").add("x", 0.25, 0.5)
    book.space("r").add("x", 1.0, 0.5)
    assert book.space("r").evidence("x") == sequential([0.25, 1.0], 0.5)
    assert book.space("r").pending == {}


REQ = RequestFeatures("chat", 100)
CANDS = [Candidate(t, "p", t) for t in ("a", "b")]


def test_replicas_sharing_a_memory_learn_from_each_others_traffic() -> None:
    """Replica 2 never sends to `a`, yet stops choosing it once replica 1 has seen it fail."""
    fleet, book1, book2 = Fleet(), Book(shared=True), Book(shared=True)
    policies = []
    for i, book in enumerate((book1, book2)):
        policy, issues = build_policy("adaptive", "p", rng=random.Random(i))
        assert issues == [] and policy is not None
        assert share(policy, lambda suffix, book=book: book.space("r#0" + suffix)) == [""]
        policies.append(policy)
    p1, p2 = policies
    for _ in range(60):
        observe(p1, Observation("a", False))
        observe(p1, Observation("b", True, latency_s=0.1))
    fleet.sync(book1)
    fleet.sync(book2)
    firsts = Counter(p2.rank(REQ, CANDS, {})[0].candidate.target_id for _ in range(200))
    assert firsts["b"] >= 195, firsts


def test_feedback_alone_moves_the_shared_memory() -> None:
    book = Book()
    learner = Adaptive(random.Random(0), AdaptiveParams(feedback_weight=1.0))
    learner.share(book.space("r#0"))
    for _ in range(20):
        learner.observe(Observation("a", None, feedback=0.0))
    e = book.space("r#0").evidence("a")
    assert e.successes == 0.0 and e.failures > 15


def test_only_parts_that_learn_get_a_memory_and_each_its_own() -> None:
    for spec, expected in [
        ("adaptive", [""]),
        ({"scorers": ["priority", {"name": "adaptive", "weight": 2}]}, [""]),
        ("priority", []),
        ({"filters": ["health"], "scorers": ["least_latency"]}, []),
        ({"scorers": ["adaptive", {"name": "adaptive", "params": {"decay": 0.9}}]}, ["", "/2"]),
    ]:
        policy, issues = build_policy(spec, "p", rng=random.Random(0))
        assert issues == [] and policy is not None
        book = Book()
        assert share(policy, lambda suffix, book=book: book.space("r#0" + suffix)) == expected
        assert sorted(book.names()) == sorted("r#0" + s for s in expected), spec


def test_two_learners_in_one_route_count_each_outcome_once_each() -> None:
    spec = {"scorers": ["adaptive", {"name": "adaptive", "params": {"decay": 0.5}}]}
    policy, _ = build_policy(spec, "p", rng=random.Random(0))
    assert policy is not None
    book = Book()
    share(policy, lambda suffix: book.space("r#0" + suffix))
    observe(policy, Observation("x", True))
    assert book.space("r#0").evidence("x").successes == pytest.approx(1.0)
    assert book.space("r#0/2").evidence("x").successes == pytest.approx(1.0)


def test_retain_forgets_the_spaces_of_routes_that_left() -> None:
    book = Book(shared=True)
    book.space("r#0").add("x", 1.0, 1.0)
    book.space("gone#0").add("x", 1.0, 1.0)
    book.retain(["r#0"])
    assert book.names() == ["r#0"]
    assert set(book.drain()) == {"r#0"}  # the forgotten space is no longer synced


def test_a_space_forgotten_during_a_round_trip_stays_forgotten() -> None:
    _, a, _ = replicas()
    a.space("r").add("x", 1.0, 1.0)
    drained = a.drain()
    a.retain([])  # a reload dropped the route while the sync was in flight
    a.settle("r", {"x": Evidence(1.0, 0.0)})
    a.unsend(drained)
    assert a.names() == []
