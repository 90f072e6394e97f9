"""Thompson sampling: a non-personal strategy that learns which items get liked."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from recsys_core.algorithms.bandit import BetaThompson
from recsys_core.strategies.base import Candidate, RecommendationContext, Strategy, candidates_from_scores


@dataclass(frozen=True, slots=True)
class ThompsonStrategy(Strategy):
    """Rank by one posterior sample per request (so concurrent users get different lists)."""

    name = "thompson"
    bandit: BetaThompson = field(default_factory=BetaThompson)

    def describe(self) -> dict[str, object]:
        return asdict(self.bandit)

    def recommend(self, ctx: RecommendationContext, n: int) -> list[Candidate]:
        scores = self.bandit.sample(ctx.stats, ctx.n_items, ctx.rng)
        return candidates_from_scores(scores, ctx, n, "bandit")
