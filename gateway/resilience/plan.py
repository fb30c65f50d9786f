"""The attempt planner: which target each attempt goes to, how long to wait, when to stop.

Pure decisions on explicit inputs (time, the `Gates` of health and budget), so the whole retry
policy is tested without sockets or sleeping. Three calls make the loop
(`gateway.resilience.driving`): `pick` (the next permit — a same-target retry, a ramping or a
not-answering target's turn included — the panic attempt, or EXHAUSTED), `after` (every stop
reason and the one budget spend for a retry, then the backoff or the same-target wait) and
`hedge` (a second target, the other budget spend); `reopen` starts deciding again when a
committed stream failed (`gateway.pipeline.continuation`). The dry run
(`gateway.resilience.dry_run`) asks the same planner.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from gateway.config.model import ResilienceConfig
from gateway.resilience.same_target import THROTTLE_MARGIN_S, SameTarget
from health.breaker import Admission
from health.outcome import TIMED_OUT, FailureReason, Outcome, OutcomeKind
from health.store import Permit
from policies.types import Candidate

_RNG = random.Random()  # shared: seeding one per request from the OS costs ~20 us


class Stop(enum.Enum):
    SUCCESS = "success"
    PASS_THROUGH = "pass_through"  # a caller error: the provider's answer goes back as is
    EXHAUSTED = "exhausted"  # no candidate left that health admits
    MAX_ATTEMPTS = "max_attempts"
    DEADLINE = "deadline"
    BUDGET = "budget"  # the retry budget is spent: do not multiply an outage
    UNANSWERED = "unanswered"  # a non-streaming answer took all of total_s: not re-sent
    CLIENT_GONE = "client_gone"


class Gates(Protocol):
    """What the planner may ask of health and the retry budget (the store, the runtime)."""

    @property
    def panic(self) -> bool:
        """resilience.panic: one last-resort attempt when every candidate is out."""
        ...

    def acquire(self, target_id: str) -> Permit | None: ...

    def force_acquire(self, target_id: str) -> Permit: ...

    def admission(self, target_id: str) -> Admission:
        """What `acquire` would answer, without taking anything."""
        ...

    def warmth(self, target_id: str) -> float:
        """The target's share of traffic now (< 1 while it ramps up after a recovery)."""
        ...

    def same_target(self, target_id: str) -> SameTarget:
        """How far this request may retry `target_id` itself (asked only after a failure)."""
        ...

    def spend(self) -> bool:
        """Take one retry from the budget (False: empty)."""
        ...

    def panic_free(self, target_id: str) -> bool:
        """No other request's panic attempt is on this target now."""
        ...


_DEFAULTS = ResilienceConfig()  # the declared defaults (gateway.config.model), not copies


ADMITS = (Admission.ALLOW, Admission.PROBE)  # what `acquire` turns into a permit
# After a timeout on a target health has since set aside (not answering, or its breaker
# opened): the retry is that dead target's cost, not a storm (docs/reliability.md, section 3).
_SET_ASIDE = (Admission.DEFER, Admission.DENY)


def _free() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Limits:
    max_attempts: int = _DEFAULTS.max_attempts
    backoff_base_s: float = _DEFAULTS.backoff_base_s
    backoff_cap_s: float = _DEFAULTS.backoff_cap_s
    deadline: float | None = None  # loop time
    stream: bool = False
    min_attempt_s: float = 0.05  # an attempt with less time than this is not started


class AttemptRecord(msgspec.Struct, frozen=True, gc=False):
    target_id: str
    outcome: Outcome
    panic: bool = False
    hedge: bool = False


@dataclass(slots=True)
class AttemptPlan:
    ranked: Sequence[Candidate]
    limits: Limits
    rng: random.Random = field(default_factory=lambda: _RNG)
    history: list[AttemptRecord] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)  # denied by health this request
    min_context: int | None = None  # after a context-length error: need a larger window
    last_was_context: bool = False
    stop: Stop | None = None
    wait_s: float = 0.0  # before the next attempt, once `after` said go on
    again: str | None = None  # the next attempt retries this target, once `after` said so

    @property
    def tried(self) -> set[str]:
        return {r.target_id for r in self.history}

    def _fits(self, c: Candidate) -> bool:
        """Large enough, after a context-length error (any candidate fits before one)."""
        need = self.min_context
        return need is None or (c.context_window is not None and c.context_window > need)

    def remaining(self) -> list[Candidate]:
        """Candidates still worth trying, in rank order (health not consulted)."""
        out = self.tried | self.skipped if self.history or self.skipped else ()
        return [c for c in self.ranked if c.target_id not in out and self._fits(c)]

    def next_target(
        self,
        acquire: Callable[[str], Permit | None],
        warmth: Callable[[str], float] | None = None,
    ) -> Permit | None:
        """The next candidate health admits; denied ones are skipped for this request.

        A target ramping up after a recovery (`warmth` < 1) is passed over by a share of
        requests, which go to the next candidates; it is still taken when none of them is
        admitted (a ramp never turns a request away)."""
        deferred: list[str] = []
        for c in self.remaining():
            tid = c.target_id
            if warmth is not None:
                share = warmth(tid)
                if share < 1.0 and self.rng.random() >= share:
                    deferred.append(tid)
                    continue
            permit = acquire(tid)
            if permit is not None:
                return permit
            self.skipped.add(tid)
        for tid in deferred:
            permit = acquire(tid)
            if permit is not None:
                return permit
            self.skipped.add(tid)
        return None

    def is_last(self, target_id: str) -> bool:
        """Whether an attempt on `target_id` is the last one this plan can make (no other
        candidate left, or it is the last target `max_attempts` allows)."""
        if len(self.tried | {target_id}) >= self.limits.max_attempts:
            return True
        return not any(c.target_id != target_id for c in self.remaining())

    def panic_target(self) -> str | None:
        """All candidates are out: the least-bad one (the policy ranks benched ones by how soon
        they may recover), for a single attempt. Only before any other attempt."""
        if self.history or not self.ranked:
            return None
        return self.ranked[0].target_id

    def pick(self, gates: Gates) -> tuple[Permit, bool] | None:
        """The next attempt: a permit and whether it is the panic attempt; None (and
        `stop` EXHAUSTED) when no candidate is admitted and no panic attempt may be made."""
        if self.again is not None:
            same, self.again = self.again, None
            permit = gates.acquire(same)  # None if its breaker opened meanwhile: fail over
            if permit is not None:
                return permit, False
        permit = self.next_target(gates.acquire, gates.warmth)
        if permit is not None:
            return permit, False
        permit = self._last_resort(gates)
        if permit is not None:
            return permit, False
        tid = self.panic_target() if gates.panic else None
        if tid is not None and gates.panic_free(tid):
            return gates.force_acquire(tid), True
        self.stop = Stop.EXHAUSTED
        return None

    def _deferred(self, gates: Gates) -> str | None:
        """The first candidate passed over only because it is not answering (admission
        DEFER), not tried yet."""
        tried = self.tried
        for c in self.ranked:
            tid = c.target_id
            if tid not in self.skipped or tid in tried or not self._fits(c):
                continue
            if gates.admission(tid) is Admission.DEFER:
                return tid
        return None

    def _last_resort(self, gates: Gates) -> Permit | None:
        """Nothing else is admitted: a candidate passed over only because it is not answering
        takes the request after all. It may only be slow, and a request with nowhere else to
        go is not better off turned away (nor limited to one panic attempt at a time)."""
        tid = self._deferred(gates) if self.skipped else None
        if tid is None:
            return None
        self.skipped.discard(tid)
        return gates.force_acquire(tid)

    def hedge(self, gates: Gates, busy: str) -> Permit | None:
        """A second target to race `busy` (in flight, so not a candidate), if health admits
        one and the budget allows one more attempt (spent only when there is a target)."""
        others = (c.target_id for c in self.remaining() if c.target_id != busy)
        if not any(gates.admission(t) in ADMITS for t in others):
            return None
        if not gates.spend():
            return None
        self.skipped.add(busy)
        try:
            return self.next_target(gates.acquire, gates.warmth)
        finally:
            self.skipped.discard(busy)

    def after(self, now: float, gates: Gates) -> Stop | None:
        """After an attempt was recorded: why to stop, or None to go on after `wait_s` (on
        `again` when it is a same-target retry)."""
        history = self.history
        last_kind = history[-1].outcome.kind if history else None
        if last_kind is OutcomeKind.SUCCESS and self.stop is None:
            self.stop = Stop.SUCCESS  # the usual case, what `decide` says first, in short
            return self.stop
        retry = self._same_target(now, gates)
        failed = last_kind is OutcomeKind.PROVIDER_FAILURE
        stop = self.decide(
            now,
            _free if failed and self._stuck_on_dead(gates) else gates.spend,
            lambda tid: gates.admission(tid) is not Admission.DENY,
            retry_same=retry is not None,
            deferred=bool(self.skipped) and self._deferred(gates) is not None,
        )
        if stop is None:
            if retry is not None:
                self.again, self.wait_s = retry
            else:
                self.wait_s = self.backoff_s(len(self.history), now)
        return stop

    def reopen(self, target_id: str, outcome: Outcome, now: float, gates: Gates) -> Stop | None:
        """A committed stream from `target_id` failed after its first byte: its record becomes
        `outcome` and the plan decides again, as after any attempt (a continuation on the next
        candidate, after `wait_s`; or why to stop)."""
        for i in range(len(self.history) - 1, -1, -1):
            record = self.history[i]
            if record.target_id == target_id and record.outcome.kind is OutcomeKind.SUCCESS:
                self.history[i] = msgspec.structs.replace(record, outcome=outcome)
                break
        self.stop = None
        return self.after(now, gates)

    def _stuck_on_dead(self, gates: Gates) -> bool:
        """The last attempt timed out on a target that health has since set aside (it is not
        answering, or its breaker opened): its retry is not charged to the retry budget."""
        if not self.history:
            return False
        last = self.history[-1]
        outcome = last.outcome
        if outcome.kind is not OutcomeKind.PROVIDER_FAILURE or last.hedge:
            return False  # the usual case, a success: no set lookup
        if outcome.reason not in TIMED_OUT:
            return False
        return gates.admission(last.target_id) in _SET_ASIDE

    def _same_target(self, now: float, gates: Gates) -> tuple[str, float] | None:
        """The target that just failed and the wait before trying it again, if the failure
        was transient (or a short 429) and it has same-target retries left."""
        if not self.history:
            return None
        last = self.history[-1]
        outcome = last.outcome
        throttled = outcome.kind is OutcomeKind.THROTTLED and outcome.retry_after_s is not None
        if last.panic or last.hedge or not (throttled or outcome.transient):
            return None
        policy = gates.same_target(last.target_id)
        done = sum(1 for r in self.history if r.target_id == last.target_id)
        if done > policy.retries:
            return None
        if throttled:
            assert outcome.retry_after_s is not None
            if outcome.retry_after_s > policy.retry_after_wait_s:
                return None  # a long wait: another target now beats this one later
            wait = outcome.retry_after_s + THROTTLE_MARGIN_S
        else:
            wait = self.backoff_s(len(self.history), now)
        if self.time_left(now) < wait + self.limits.min_attempt_s:
            return None  # the deadline cannot afford the wait: fail over at once
        return last.target_id, wait

    def record(self, record: AttemptRecord, *, context_exceeded: bool = False) -> None:
        self.history.append(record)
        self.last_was_context = context_exceeded
        if context_exceeded:
            window = next(
                (c.context_window for c in self.ranked if c.target_id == record.target_id), None
            )
            self.min_context = window or 0

    def decide(
        self,
        now: float,
        budget_ok: Callable[[], bool],
        available: Callable[[str], bool] = lambda _tid: True,
        *,
        retry_same: bool = False,
        deferred: bool = False,
    ) -> Stop | None:
        """After an attempt: stop (and why), or None to go on. Spends budget only to go on;
        `available` (health, without side effects) keeps it from paying for a dead end;
        `retry_same`: the next attempt is on the same target, so other candidates need not
        remain; `deferred`: a candidate passed over as not answering is left (the last
        resort)."""
        if self.stop is not None:
            return self.stop
        last = self.history[-1] if self.history else None
        stop: Stop | None = None
        if last is not None and last.outcome.kind is OutcomeKind.SUCCESS:
            stop = Stop.SUCCESS
        elif last is not None and last.outcome.reason is FailureReason.CLIENT_GONE:
            stop = Stop.CLIENT_GONE
        elif last is not None and last.outcome.reason is FailureReason.DEADLINE:
            stop = Stop.DEADLINE
        elif last is not None and not last.outcome.kind.fails_over and not self.last_was_context:
            stop = Stop.PASS_THROUGH
        elif last is not None and self._unanswered(last):
            stop = Stop.UNANSWERED
        elif not retry_same and len(self.tried) >= self.limits.max_attempts:
            stop = Stop.MAX_ATTEMPTS  # targets tried; same-target retries are bounded apart
        elif self.time_left(now) < self.limits.min_attempt_s:
            stop = Stop.DEADLINE
        elif (
            not retry_same
            and not deferred
            and not any(available(c.target_id) for c in self.remaining())
        ):
            stop = Stop.EXHAUSTED
        elif not budget_ok():
            stop = Stop.BUDGET
        self.stop = stop
        return stop

    def _unanswered(self, last: AttemptRecord) -> bool:
        """A non-streaming request whose answer did not come within the attempt's total_s is
        not re-sent unless the caller set a deadline: the generation may still be running (and
        billed), and with no deadline nothing bounds N more of them."""
        timed_out = last.outcome.reason is FailureReason.TOTAL_TIMEOUT
        return timed_out and not self.limits.stream and self.limits.deadline is None

    def time_left(self, now: float) -> float:
        return float("inf") if self.limits.deadline is None else self.limits.deadline - now

    def backoff_s(self, attempt_number: int, now: float) -> float:
        """Full jitter (AWS): uniform in [0, min(cap, base * 2^(n-1))], within the deadline."""
        lim = self.limits
        ceiling = min(lim.backoff_cap_s, lim.backoff_base_s * (2 ** max(0, attempt_number - 1)))
        wait = self.rng.uniform(0.0, ceiling)
        return max(0.0, min(wait, self.time_left(now) - lim.min_attempt_s))
