"""Strategies: Thompson sampling, BPR with its fallback, and the candidate helpers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pytest

from recsys_core.algorithms.bandit import BetaThompson, ItemStats
from recsys_core.algorithms.factors import FactorModel
from recsys_core.catalog import CatalogView
from recsys_core.strategies.bandit import ThompsonStrategy
from recsys_core.strategies.base import (
    Candidate,
    RecommendationContext,
    UserProfile,
    candidates_from_scores,
    merge_candidates,
    random_unseen,
    rank_with_fill,
)
from recsys_core.strategies.bpr import BPRStrategy
from recsys_core.strategies.registry import STRATEGY_BUILDERS, build_strategy

IMPRESSIONS_CONFIG = BetaThompson(beta_per_silent_impression=1.0)


def _ctx(
    n_items: int,
    *,
    stats: ItemStats | None = None,
    model: FactorModel | None = None,
    shown: Iterable[int] = (),
    liked: Iterable[int] = (),
    disliked: Iterable[int] = (),
    user_id: str = "u1",
    seed: int = 0,
) -> RecommendationContext:
    catalog = CatalogView.build(1, [f"i{i}" for i in range(n_items)], {})
    mask = np.zeros(n_items, dtype=bool)
    mask[list(shown)] = True
    profile = UserProfile(
        shown=mask, liked=np.array(list(liked), dtype=np.int64), disliked=np.array(list(disliked), dtype=np.int64)
    )
    return RecommendationContext(
        user_id=user_id,
        catalog=catalog,
        stats=(stats or ItemStats.empty()).padded(n_items),
        model=model,
        profile=profile,
        rng=np.random.default_rng(seed),
        # As the service reads it: the user's row of the model, if the model knows the user.
        user_vector=model.user_vector(user_id) if model is not None else None,
    )


def _model(item_scores: list[float], user_id: str = "u1") -> FactorModel:
    """A one-factor model whose user scores are exactly ``item_scores``."""
    n = len(item_scores)
    return FactorModel(
        version=1,
        user_ids=np.array([user_id]),
        user_factors=np.array([[1.0]], dtype=np.float32),
        item_ids=np.array([f"i{i}" for i in range(n)]),
        item_factors=np.array(item_scores, dtype=np.float32).reshape(n, 1),
        neighbour_indices=np.zeros((n, 0), dtype=np.int32),
        neighbour_sims=np.zeros((n, 0), dtype=np.float32),
    )


def _indices(candidates: list[Candidate]) -> list[int]:
    return [c.index for c in candidates]


# --- UserProfile / helpers ---------------------------------------------------------------------------------


def test_empty_profile() -> None:
    profile = UserProfile.empty(3)
    assert profile.shown.tolist() == [False, False, False]
    assert profile.n_feedback == 0
    assert UserProfile(np.zeros(2, bool), np.array([1]), np.array([0])).n_feedback == 2


def test_candidates_from_scores_excludes_shown_and_extra_mask() -> None:
    ctx = _ctx(4, shown=[3])
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    assert candidates_from_scores(scores, ctx, 2, "s") == [Candidate(2, "s"), Candidate(1, "s")]
    extra = np.array([False, False, True, False])
    assert _indices(candidates_from_scores(scores, ctx, 5, "s", exclude=extra)) == [1, 0]


def test_merge_candidates_dedupes_keeping_first() -> None:
    first = [Candidate(3, "bpr"), Candidate(1, "bpr")]
    second = [Candidate(1, "bandit"), Candidate(4, "bandit"), Candidate(3, "bandit"), Candidate(0, "bandit")]
    assert merge_candidates(first, second, n=10) == [
        Candidate(3, "bpr"),
        Candidate(1, "bpr"),
        Candidate(4, "bandit"),
        Candidate(0, "bandit"),
    ]
    assert merge_candidates(first, second, n=3) == [Candidate(3, "bpr"), Candidate(1, "bpr"), Candidate(4, "bandit")]
    assert merge_candidates(n=5) == []
    assert merge_candidates([Candidate(2, "a"), Candidate(2, "b")], n=5) == [Candidate(2, "a")]


def test_merge_candidates_respects_n_zero() -> None:
    assert merge_candidates([Candidate(1, "a")], n=0) == []


def test_random_unseen_never_returns_shown() -> None:
    shown = [0, 2, 3, 5, 7, 8]
    for seed in range(20):
        picked = random_unseen(_ctx(10, shown=shown, seed=seed), 3)
        assert len(picked) == 3
        assert len(set(_indices(picked))) == 3
        assert set(_indices(picked)) <= {1, 4, 6, 9}
        assert {c.source for c in picked} == {"fill"}


def test_random_unseen_asks_for_more_than_available() -> None:
    picked = random_unseen(_ctx(5, shown=[1, 3]), 10, source="x")
    assert sorted(_indices(picked)) == [0, 2, 4]
    assert {c.source for c in picked} == {"x"}
    assert random_unseen(_ctx(3, shown=[0, 1, 2]), 3) == []


# --- ThompsonStrategy --------------------------------------------------------------------------------------


def test_thompson_never_returns_shown_and_returns_up_to_n() -> None:
    stats = ItemStats(
        likes=np.arange(12, dtype=np.float32), dislikes=np.ones(12, np.float32), impressions=np.zeros(12, np.float32)
    )
    strategy = ThompsonStrategy()
    shown = [0, 4, 5, 11]
    for seed in range(20):
        result = strategy.recommend(_ctx(12, stats=stats, shown=shown, seed=seed), 5)
        assert len(result) == 5
        assert len(set(_indices(result))) == 5
        assert not set(_indices(result)) & set(shown)
        assert {c.source for c in result} == {"bandit"}
    everything = strategy.recommend(_ctx(12, stats=stats, shown=shown), 50)
    assert sorted(_indices(everything)) == [1, 2, 3, 6, 7, 8, 9, 10]


def test_thompson_strongly_liked_item_ranks_first() -> None:
    n = 20
    likes = np.ones(n, dtype=np.float32)  # every other item: 1 like in 30 impressions -> Beta(2, 30)
    impressions = np.full(n, 30.0, dtype=np.float32)
    likes[7], impressions[7] = 30.0, 32.0  # 30 likes in 32 impressions -> Beta(31, 3)
    stats = ItemStats(likes, np.zeros(n, dtype=np.float32), impressions)
    strategy = ThompsonStrategy(IMPRESSIONS_CONFIG)
    ctx = _ctx(n, stats=stats, seed=123)  # one generator across the 50 requests
    firsts = [strategy.recommend(ctx, 3)[0].index for _ in range(50)]
    assert firsts.count(7) >= 49


def test_thompson_silent_impressions_matter_only_in_impressions_config() -> None:
    # Item 0: 1 like out of 1000 impressions. Item 1: nothing yet. The seed bandit ignores impressions, so
    # item 0 (Beta(2, 1)) usually beats the fresh item; the impressions config (Beta(2, 1000)) almost never.
    stats = ItemStats(np.array([1.0, 0.0], np.float32), np.zeros(2, np.float32), np.array([1000.0, 0.0], np.float32))
    rng_ctx = _ctx(2, stats=stats, seed=9)
    seed_wins = sum(ThompsonStrategy().recommend(rng_ctx, 1)[0].index == 0 for _ in range(200))
    impressions_wins = sum(ThompsonStrategy(IMPRESSIONS_CONFIG).recommend(rng_ctx, 1)[0].index == 0 for _ in range(200))
    assert seed_wins > 100  # P = 2/3
    assert impressions_wins < 10


# --- BPRStrategy -------------------------------------------------------------------------------------------


def test_bpr_unknown_user_falls_back_to_bandit() -> None:
    model = _model([5.0, 4.0, 3.0, 2.0, 1.0])
    result = BPRStrategy().recommend(_ctx(5, model=model, user_id="stranger", shown=[0]), 3)
    assert len(result) == 3
    assert {c.source for c in result} == {"bandit"}
    assert 0 not in _indices(result)


def test_bpr_without_model_falls_back() -> None:
    result = BPRStrategy().recommend(_ctx(4, model=None), 4)
    assert sorted(_indices(result)) == [0, 1, 2, 3]
    assert {c.source for c in result} == {"bandit"}


def test_bpr_known_user_ranks_by_score_excluding_answered_and_shown() -> None:
    model = _model([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    # Shown 0; liked 1 and disliked 2 (answered items are excluded even if the shown set missed them).
    ctx = _ctx(6, model=model, shown=[0], liked=[1], disliked=[2])
    assert BPRStrategy().recommend(ctx, 2) == [Candidate(3, "bpr"), Candidate(4, "bpr")]
    assert BPRStrategy().recommend(ctx, 3) == [Candidate(3, "bpr"), Candidate(4, "bpr"), Candidate(5, "bpr")]


def test_bpr_fills_items_newer_than_the_model_from_the_fallback() -> None:
    model = _model([5.0, 4.0, 3.0])  # the catalog grew to 6 items since training
    ctx = _ctx(6, model=model, shown=[0, 1], liked=[1])
    result = BPRStrategy().recommend(ctx, 4)
    assert result[0] == Candidate(2, "bpr")
    assert len(result) == 4
    assert {c.source for c in result[1:]} == {"bandit"}
    assert sorted(_indices(result[1:])) == [3, 4, 5]


def test_bpr_from_registry_uses_thompson_fallback_with_params() -> None:
    strategy = build_strategy("bpr", {"beta_per_silent_impression": 1.0})
    assert isinstance(strategy, BPRStrategy)
    assert isinstance(strategy.fallback, ThompsonStrategy)
    assert strategy.fallback.bandit == IMPRESSIONS_CONFIG


def test_bpr_fill_never_returns_answered_items() -> None:
    # Known user, model older than the catalog (items 2 and 3 are new). The user liked item 3 without it
    # being in the shown set (an /interact on an item /recs never returned).
    model = _model([5.0, 4.0])
    ctx = _ctx(4, model=model, shown=[0], liked=[3])
    result = BPRStrategy().recommend(ctx, 3)
    assert 3 not in _indices(result)


def test_rank_with_fill_tops_up_a_short_ranking_with_unseen_items_only() -> None:
    class OnlyOne(ThompsonStrategy):
        def recommend(self, ctx: RecommendationContext, n: int) -> list[Candidate]:
            return [Candidate(3, "bandit")]

    ctx = _ctx(8, shown=[0, 1])
    ranked = rank_with_fill(OnlyOne(), ctx, 5)
    assert ranked[0] == Candidate(3, "bandit")
    assert len(ranked) == 5 and len({c.index for c in ranked}) == 5
    assert {c.source for c in ranked[1:]} == {"fill"}
    assert not {c.index for c in ranked} & {0, 1}
    # Exactly what the strategy gives when it gives enough.
    full = rank_with_fill(ThompsonStrategy(), ctx, 4)
    assert all(c.source == "bandit" for c in full)


# --- answered items ----------------------------------------------------------------------------------------

# Items 0 and 1 were answered through /interact without /recs ever showing them; the evidence and the model
# both rate them far above every other item.
ANSWERED_UNSHOWN = (0, 1)


def _answered_ctx(n_items: int, shown: Iterable[int], seed: int, with_model: bool) -> RecommendationContext:
    likes = np.zeros(n_items, dtype=np.float32)
    likes[list(ANSWERED_UNSHOWN)] = 90
    stats = ItemStats(likes, np.zeros(n_items, dtype=np.float32), np.full(n_items, 100, dtype=np.float32))
    model = _model([10.0, 9.0] + [0.0] * (n_items - 2)) if with_model else None
    return _ctx(n_items, stats=stats, model=model, shown=shown, liked=[0], disliked=[1], seed=seed)


@pytest.mark.parametrize("with_model", [False, True])
@pytest.mark.parametrize("name", sorted(STRATEGY_BUILDERS))
def test_no_strategy_recommends_an_item_the_user_answered_without_seeing_it(name: str, with_model: bool) -> None:
    strategy = build_strategy(name)
    for seed in range(10):
        ranked = rank_with_fill(strategy, _answered_ctx(30, shown=[5, 6], seed=seed, with_model=with_model), 8)
        assert len(ranked) == 8
        assert not set(_indices(ranked)) & {0, 1, 5, 6}


@pytest.mark.parametrize("with_model", [False, True])
@pytest.mark.parametrize("name", sorted(STRATEGY_BUILDERS))
def test_the_fill_never_offers_an_answered_item_when_the_catalog_is_nearly_exhausted(
    name: str, with_model: bool
) -> None:
    strategy = build_strategy(name)
    # Everything but the answered items and three others has been shown: the answer needs the fill.
    for seed in range(10):
        ctx = _answered_ctx(30, shown=range(5, 30), seed=seed, with_model=with_model)
        ranked = rank_with_fill(strategy, ctx, 10)
        assert sorted(_indices(ranked)) == [2, 3, 4]


def test_random_unseen_leaves_out_answered_items() -> None:
    ctx = _ctx(6, shown=[0], liked=[1], disliked=[2])
    for seed in range(10):
        assert sorted(_indices(random_unseen(replace(ctx, rng=np.random.default_rng(seed)), 6))) == [3, 4, 5]
