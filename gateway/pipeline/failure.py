"""The one error a request gets when no attempt answered: a pure function of the plan.

    nothing admitted (or only the panic attempt, failed)  503 no_candidate_available + Retry-After
    the deadline ran out                                  504 deadline_exceeded
    a non-streaming answer took all of total_s            504 upstream_timeout
    every attempt failed (or the budget ran out)          502 all_candidates_failed

Each message names every attempt's target and what happened to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.edge.errors import (
    AllCandidatesFailed,
    GatewayError,
    GatewayTimeout,
    NoCandidateAvailable,
    counted,
)
from gateway.resilience.plan import AttemptPlan, Stop
from health.signals import TargetHealth


def failure(
    plan: AttemptPlan,
    health: Callable[[], Mapping[str, TargetHealth]],
    deadline_header: str,
) -> GatewayError:
    """`health()`: the ranked candidates' views now (how long until one may serve), read only
    when nothing could be tried."""
    history, stop = plan.history, plan.stop
    attempts = {"x-turnout-attempts": str(len(history))}
    if not history or all(r.panic for r in history):
        waits = [max(h.open_for_s, h.throttled_for_s) for h in health().values()]
        tried = " (a last-resort attempt failed too)" if history else ""
        return NoCandidateAvailable(
            "No candidate target is available right now (all are open or throttled)"
            f"{tried}; retry later.",
            retry_after_s=min(waits, default=1.0),
            headers=attempts,
        )
    summary = "; ".join(f"{r.target_id}: {r.outcome.summary}" for r in history)
    if stop is Stop.DEADLINE:
        return GatewayTimeout(
            f"The request deadline ran out after {counted(len(history), 'attempt')}: {summary}.",
            headers=attempts,
        )
    if stop is Stop.UNANSWERED:
        return GatewayTimeout(
            f"No answer within the attempt's total_s ({summary}); not re-sent to another "
            "target, because that generation may still be running. Send a deadline "
            f"({deadline_header} or the route's deadline_s) to allow re-sends within it.",
            code="upstream_timeout",
            headers=attempts,
        )
    why = " (retry budget exhausted)" if stop is Stop.BUDGET else ""
    return AllCandidatesFailed(
        f"{'All ' if len(history) > 1 else ''}{counted(len(history), 'upstream attempt')} "
        f"failed{why}: {summary}.",
        headers=attempts,
    )
