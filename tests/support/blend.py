"""Watching which path the blend strategy's ranking takes (the candidate universe, or every arm)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import recsys_core.strategies.blend as blend
from recsys_core.strategies.base import Candidate, RecommendationContext
from recsys_core.strategies.blend import BlendStrategy, _Scores


@dataclass
class SelectionCounts:
    universe: int = 0  # answers taken from the candidate universe alone
    fallback: int = 0  # universes a bound refused: the request then ranked every arm


def count_blend_selections(monkeypatch: pytest.MonkeyPatch) -> SelectionCounts:
    """Counts, from now on, how BlendStrategy._select answers; its answers are unchanged."""
    counts = SelectionCounts()
    select = BlendStrategy._select

    def counting_select(
        self: BlendStrategy,
        ctx: RecommendationContext,
        scores: _Scores,
        n: int,
        k: int,
        n_explore: int,
        exploit_bound: float,
        explore_bound: float,
    ) -> list[Candidate]:
        try:
            answer = select(self, ctx, scores, n, k, n_explore, exploit_bound, explore_bound)
        except blend._NotExact:
            counts.fallback += 1
            raise
        if scores.universe is not None:
            counts.universe += 1
        return answer

    monkeypatch.setattr(BlendStrategy, "_select", counting_select)
    return counts
