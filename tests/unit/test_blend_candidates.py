"""The blend ranks a candidate universe (each draw's head + the user's neighbours) before every arm.

That is a speed-up only: the answers must be exactly those of ranking every arm. These tests compare both on
random catalogs, evidence and users, with the head made small so that the fallback to every arm happens too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import recsys_core.strategies.blend as blend
from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.factors import FactorModel
from recsys_core.catalog import CatalogView
from recsys_core.strategies.base import DrawCache, ItemNeighbours, RecommendationContext, UserProfile
from recsys_core.strategies.blend import BlendParams, BlendStrategy
from tests.support.blend import count_blend_selections
from tests.support.params import BlendOverrides

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi")
N_ITEMS = 400


def _world(seed: int) -> tuple[CatalogView, ItemStats, ItemNeighbours, FactorModel]:
    rng = np.random.default_rng(seed)
    ids = [f"i{i}" for i in range(N_ITEMS)]
    genres = {
        item: [GENRES[g] for g in rng.choice(len(GENRES), size=rng.integers(0, 4), replace=False)] for item in ids
    }
    catalog = CatalogView.build(1, ids, genres)
    # Heavy-tailed appeal: a few items are liked often, most rarely, many never shown.
    rate = rng.beta(0.3, 6.0, N_ITEMS)
    impressions = np.where(rng.random(N_ITEMS) < 0.3, 0, rng.geometric(0.05, N_ITEMS)).astype(np.float32)
    likes = rng.binomial(impressions.astype(np.int64), rate).astype(np.float32)
    dislikes = rng.binomial((impressions - likes).astype(np.int64), 0.1).astype(np.float32)
    stats = ItemStats(likes, dislikes, impressions)
    co_likes = ItemNeighbours(
        rng.integers(0, N_ITEMS, (N_ITEMS, 5)).astype(np.int32), rng.random((N_ITEMS, 5)).astype(np.float32)
    )
    model = FactorModel(
        version=1,
        user_ids=np.array(["u"]),
        user_factors=rng.normal(size=(1, 4)).astype(np.float32),
        item_ids=np.array(ids),
        item_factors=rng.normal(size=(N_ITEMS, 4)).astype(np.float32),
        neighbour_indices=np.zeros((0, 0), dtype=np.int32),
        neighbour_sims=np.zeros((0, 0), dtype=np.float32),
    )
    return catalog, stats, co_likes, model


def _context(seed: int, user: int, *, with_model: bool) -> RecommendationContext:
    catalog, stats, co_likes, model = _world(seed)
    rng = np.random.default_rng(1000 * seed + user)
    shown = np.zeros(N_ITEMS, dtype=bool)
    shown[rng.choice(N_ITEMS, size=rng.integers(0, 60), replace=False)] = True
    seen = np.flatnonzero(shown)
    liked = rng.choice(seen, size=min(seen.size, int(rng.integers(0, 6))), replace=False)
    disliked = np.setdiff1d(seen, liked)[: int(rng.integers(0, 4))]
    actions = rng.choice(np.array([1, -1], dtype=np.int8), size=liked.size + disliked.size)
    return RecommendationContext(
        user_id="u",
        catalog=catalog,
        stats=stats,
        model=model if with_model else None,
        user_vector=model.user_vector("u") if with_model else None,
        profile=UserProfile(shown, liked.astype(np.int64), disliked.astype(np.int64), actions),
        rng=rng,
        k=10,
        co_likes=co_likes,
        draws=DrawCache(),
    )


def _answers(strategy: BlendStrategy, ctx: RecommendationContext, n: int, draw_seed: int) -> list[tuple[int, str]]:
    ctx = replace(ctx, rng=np.random.default_rng(draw_seed), draws=DrawCache())
    return [(c.index, c.source) for c in strategy.recommend(ctx, n)]


CONFIGS: dict[str, BlendOverrides] = {
    "defaults": {},
    "MMR with a genre cap": {"diversity_weight": 0.3, "genre_cap": 2},
    "disliked neighbours pushed down, dislike streak": {"dislike_neighbour_weight": 0.5, "dislike_streak": 2},
    "exploration among items shown < 10 times, 3 slots": {"explore_below": 10, "explore_slots": 3.0},
    "strong taste": {"taste_weight": 3.0, "taste_smoothing": 0.5},
    "no pessimism, no group prior": {"exploit_pessimism": 0.0, "group_prior_shrinkage": 0.0},
}


@pytest.mark.parametrize("params", CONFIGS.values(), ids=CONFIGS.keys())
def test_the_candidate_universe_answers_exactly_as_ranking_every_arm(
    params: BlendOverrides, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = BlendStrategy(BlendParams(**params))
    outcomes = count_blend_selections(monkeypatch)
    compared = 0
    for seed in range(6):
        for user in range(8):
            ctx = _context(seed, user, with_model=user % 2 == 0)
            for n in (10, 30):
                monkeypatch.setattr(blend, "HEAD_SIZE", N_ITEMS)  # every arm
                expected = _answers(strategy, ctx, n, draw_seed=user)
                monkeypatch.setattr(blend, "HEAD_SIZE", 64)
                assert _answers(strategy, ctx, n, draw_seed=user) == expected, (seed, user, n)
                compared += 1
    print(f"compared {compared} answers: {outcomes}")
    # Both paths were taken: answers from the universe alone, and fallbacks to every arm.
    assert outcomes.universe > 0 and outcomes.fallback > 0


def test_an_item_outside_the_head_that_the_taste_lifts_is_still_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head holds the bandit's best arms (all Comedy); a user who loves Horror must still get the
    best-evidenced Horror item, which is outside the head, first."""
    n = 100
    ids = [f"i{i}" for i in range(n)]
    genres = {item: ["Comedy"] if i < 90 else ["Horror"] for i, item in enumerate(ids)}
    catalog = CatalogView.build(1, ids, genres)
    impressions = np.full(n, 1000.0, dtype=np.float32)
    likes = np.linspace(300, 100, n).astype(np.float32)  # item 0 best, item 99 worst
    stats = ItemStats(likes, np.zeros(n, dtype=np.float32), impressions)
    shown = np.zeros(n, dtype=bool)
    liked = np.arange(95, 100)  # five Horror likes
    shown[liked] = True
    ctx = RecommendationContext(
        user_id="u",
        catalog=catalog,
        stats=stats,
        model=None,
        profile=UserProfile(shown, liked, np.empty(0, dtype=np.int64)),
        rng=np.random.default_rng(0),
        k=3,
        draws=DrawCache(),
    )
    strategy = BlendStrategy(BlendParams(explore_slots=0.0, taste_weight=5.0, neighbour_weight=0.0))
    monkeypatch.setattr(blend, "HEAD_SIZE", 10)
    answer = _answers(strategy, ctx, 3, draw_seed=0)
    assert all(index >= 90 for index, _ in answer)  # unseen Horror items, all outside the head of 10
    monkeypatch.setattr(blend, "HEAD_SIZE", n)
    assert _answers(strategy, ctx, 3, draw_seed=0) == answer


def test_the_bound_covers_an_items_taste_despite_float32_rounding() -> None:
    """Three equal genre lifts average to more than the lift itself in float32 (3 x float32(1/3) > 1): the bound on
    items outside the universe must still hold, or one could tie with the answer's last item unnoticed."""
    catalog = CatalogView(1, ("a",), ("g0", "g1", "g2"), np.ones((1, 3), dtype=bool))
    lift = np.full(3, 1.4203281057108941e-05)
    taste = float((catalog.genre_mean @ lift)[0])
    assert taste > lift.max()  # the rounding this test is about
    personal = blend._Personal(genre_lift=lift, neighbour=None, anchor=None, bpr=None)
    assert taste <= personal.upper_bound_outside()


def test_a_user_who_has_seen_most_of_the_head_still_gets_a_full_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head (the 5 best arms) holds only 2 unseen items: the 2 it has beat every arm outside it, but 5 were
    asked for, so the request must rank every arm rather than answer with 2."""
    n = 20
    ids = [f"i{i}" for i in range(n)]
    catalog = CatalogView.build(1, ids, {item: ["Drama"] for item in ids})
    likes = np.linspace(500, 50, n).astype(np.float32)  # item 0 best, item 19 worst, all well measured
    stats = ItemStats(likes, np.zeros(n, dtype=np.float32), np.full(n, 1000.0, dtype=np.float32))
    shown = np.zeros(n, dtype=bool)
    shown[:3] = True
    ctx = RecommendationContext(
        user_id="u",
        catalog=catalog,
        stats=stats,
        model=None,
        profile=UserProfile(shown, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)),
        rng=np.random.default_rng(0),
        k=5,
        draws=DrawCache(),
    )
    strategy = BlendStrategy(BlendParams(explore_slots=0.0, taste_weight=0.0, neighbour_weight=0.0, bpr_weight=0.0))
    monkeypatch.setattr(blend, "HEAD_SIZE", 5)
    answer = _answers(strategy, ctx, 5, draw_seed=0)
    assert [index for index, _ in answer] == [3, 4, 5, 6, 7]
