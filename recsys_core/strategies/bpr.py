"""BPR for users the model knows, another strategy for everyone else."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

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
        answered = np.zeros(ctx.n_items, dtype=bool)
        answered[ctx.profile.liked] = True
        answered[ctx.profile.disliked] = True
        personal = candidates_from_scores(scores, ctx, n, "bpr", exclude=answered)
        if len(personal) >= n:
            return personal
        # Items the user already answered stay out of the filler too.
        rest = replace(ctx, profile=replace(ctx.profile, shown=ctx.profile.shown | answered))
        return merge_candidates(personal, self.fallback.recommend(rest, n), n=n)
