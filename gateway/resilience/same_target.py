"""How far one request may retry the target that just failed, before failing over
(`AttemptPlan.after` asks, only after a failure): the route's setting, else the target's
provider's, else `resilience`'s."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import Config, ResilienceConfig, RouteConfig

_DEFAULTS = ResilienceConfig()  # the declared defaults (gateway.config.model), not copies
THROTTLE_MARGIN_S = 0.02  # past the Retry-After: the store's throttle has surely expired


@dataclass(frozen=True, slots=True)
class SameTarget:
    """Retries on the target that just failed, before failing over: after a transient failure
    (`Outcome.transient`) with the usual backoff, or after a 429 whose Retry-After is at most
    `retry_after_wait_s`, once it has passed. `retries` bounds both, per target and request."""

    retries: int = _DEFAULTS.same_target_retries
    retry_after_wait_s: float = _DEFAULTS.retry_after_wait_s

    @staticmethod
    def of(config: Config, route: RouteConfig, target_id: str) -> SameTarget:
        """The route's setting, else the target's provider's, else resilience's."""
        provider = config.providers[config.targets[target_id].provider]
        resilience = config.resilience
        retries = route.same_target_retries
        if retries is None:
            retries = provider.same_target_retries
        wait = route.retry_after_wait_s
        if wait is None:
            wait = provider.retry_after_wait_s
        return SameTarget(
            resilience.same_target_retries if retries is None else retries,
            resilience.retry_after_wait_s if wait is None else wait,
        )


NO_SAME_TARGET = SameTarget(0, 0.0)
