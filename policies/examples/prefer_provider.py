"""An example plugin: prefer targets on some providers (say, your own vLLM before a paid API).

Load it by reference, as a whole policy or as one scorer among others:

    policy: {name: "policies.examples.prefer_provider:PreferProvider",
             params: {providers: [local, openai]}}

    policy:
      filters: [capability, health]
      scorers:
        - {name: "policies.examples.prefer_provider:PreferProvider", weight: 2,
           params: {providers: [local]}}
        - lowest_cost

or publish it from your own package under the entry-point group `turnout.policies`:

    [project.entry-points."turnout.policies"]
    prefer_provider = "mypackage.prefer:PreferProvider"

The loader sees `Params` (a frozen dataclass), decodes the YAML `params` into it with every
problem reported by path (`providers` is required; `check()` adds range checks), and calls
`PreferProvider(params)`. The instance has `score()`, so it is a scorer (see policies.types).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from health.signals import TargetHealth
from policies.types import Candidate, RequestFeatures, Score


@dataclass(frozen=True, slots=True)
class PreferProviderParams:
    providers: tuple[str, ...]  # required: preferred providers, most preferred first
    others: float = 0.0  # the score of a target on any other provider

    def check(self) -> list[tuple[str, str]]:
        issues: list[tuple[str, str]] = []
        if not self.providers:
            issues.append(("providers", "must name at least one provider"))
        if not 0.0 <= self.others <= 1.0:
            issues.append(("others", "must be from 0 to 1"))
        return issues


@dataclass(frozen=True, slots=True)
class PreferProvider:
    """Scores 1 for the first listed provider, down to 0.5 for the last; `others` elsewhere."""

    Params: ClassVar[type[PreferProviderParams]] = PreferProviderParams

    params: PreferProviderParams
    name: str = "prefer_provider"

    def score(
        self,
        request: RequestFeatures,
        candidates: Sequence[Candidate],
        health: Sequence[TargetHealth],
    ) -> list[Score]:
        listed = self.params.providers
        out: list[Score] = []
        for c in candidates:
            if c.provider in listed:
                k = listed.index(c.provider)
                out.append(Score(1.0 - 0.5 * k / len(listed), f"preferred #{k + 1}"))
            else:
                out.append(Score(self.params.others, "not preferred"))
        return out
