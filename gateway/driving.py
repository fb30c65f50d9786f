"""tenacity strategies that only ask the plan: the glue between tenacity and `AttemptPlan`.

tenacity is the controller of the retry loop; these one-method objects are its `stop` and
`wait`. They hold no state of their own and decide nothing themselves.
"""

from __future__ import annotations

from typing import Any, Protocol

import tenacity

from gateway.plan import AttemptPlan
from health.breaker import Admission


class Driven(Protocol):
    """What the strategies read from the exchange they drive."""

    plan: AttemptPlan
    loop: Any  # an event loop: only .time() is used
    rt: Any  # the runtime: .store.admission() and .budget.try_spend()


class PlanStop(tenacity.stop.stop_base):
    def __init__(self, ex: Driven) -> None:
        self._ex = ex

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        ex = self._ex
        store = ex.rt.store

        def available(tid: str) -> bool:
            return store.admission(tid) is not Admission.DENY

        return ex.plan.decide(ex.loop.time(), ex.rt.budget.try_spend, available) is not None


class PlanWait(tenacity.wait.wait_base):
    def __init__(self, ex: Driven) -> None:
        self._ex = ex

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self._ex.plan.backoff_s(retry_state.attempt_number, self._ex.loop.time())
