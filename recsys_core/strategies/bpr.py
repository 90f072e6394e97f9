"""BPR for users the model knows, another strategy for everyone else."""

from __future__ import annotations

from dataclasses import dataclass, field

from recsys_core.strategies.bandit import ThompsonStrategy
from recsys_core.strategies.base import (
    Candidate,
    RecommendationContext,
    Strategy,
    candidates_from_scores,
    merge_candidates,
)


@dataclass(frozen=True, slots=True)
class BPRStrategy(Strategy):
    name = "bpr"
    fallback: Strategy = field(default_factory=ThompsonStrategy)

    def describe(self) -> dict[str, object]:
        return {f"fallback.{key}": value for key, value in self.fallback.describe().items()}

    def recommend(self, ctx: RecommendationContext, n: int) -> list[Candidate]:
        scores = ctx.model_scores()
        if scores is None:
            return self.fallback.recommend(ctx, n)
        # Answered items stay out of both lists: every strategy leaves out ``UserProfile.excluded()``.
        personal = candidates_from_scores(scores, ctx, n, "bpr")
        if len(personal) >= n:
            return personal
        return merge_candidates(personal, self.fallback.recommend(ctx, n), n=n)
