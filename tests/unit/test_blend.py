"""The blend strategy and its components on small hand-made cases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pytest

from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.co_likes import co_like_neighbours
from recsys_core.algorithms.personal import mmr_rerank, neighbour_scores, taste_scores
from recsys_core.catalog import CatalogView
from recsys_core.strategies.base import ItemNeighbours, RecommendationContext, UserProfile
from recsys_core.strategies.blend import BlendParams, BlendStrategy

# Flat bandit: a huge prior makes every item's posterior sample (almost) the same, so only the component
# under test decides the order.
FLAT = {"prior_strength": 1e7, "prior_mean": 0.05, "exploit_pessimism": 0.0, "explore_slots": 0.0}
NO_PERSONAL = {"neighbour_weight": 0.0, "bpr_weight": 0.0, "taste_weight": 0.0, "dislike_neighbour_weight": 0.0}


def _catalog(genres: Sequence[Sequence[str]]) -> CatalogView:
    ids = [f"i{i}" for i in range(len(genres))]
    return CatalogView.build(1, ids, dict(zip(ids, genres, strict=True)))


def _ctx(
    catalog: CatalogView,
    *,
    stats: ItemStats | None = None,
    shown: Iterable[int] = (),
    liked: Iterable[int] = (),
    disliked: Iterable[int] = (),
    actions: Iterable[int] = (),
    co_likes: ItemNeighbours | None = None,
    k: int = 3,
    seed: int = 0,
) -> RecommendationContext:
    n = len(catalog)
    mask = np.zeros(n, dtype=bool)
    mask[list(shown)] = True
    profile = UserProfile(
        shown=mask,
        liked=np.array(list(liked), dtype=np.int64),
        disliked=np.array(list(disliked), dtype=np.int64),
        recent_actions=np.array(list(actions), dtype=np.int8),
    )
    return RecommendationContext(
        user_id="u",
        catalog=catalog,
        stats=(stats or ItemStats.empty()).padded(n),
        model=None,
        profile=profile,
        rng=np.random.default_rng(seed),
        k=k,
        co_likes=co_likes,
    )


def _blend(**params: float) -> BlendStrategy:
    return BlendStrategy(BlendParams(**{**FLAT, **NO_PERSONAL, **params}))


def _neighbours(rows: dict[int, list[tuple[int, float]]], n: int, width: int = 2) -> ItemNeighbours:
    indices = np.zeros((n, width), dtype=np.int32)
    sims = np.zeros((n, width), dtype=np.float32)
    for row, pairs in rows.items():
        for j, (item, sim) in enumerate(pairs):
            indices[row, j], sims[row, j] = item, sim
    return ItemNeighbours(indices, sims)


def test_after_a_like_a_neighbour_of_the_liked_item_ranks_first() -> None:
    catalog = _catalog([["Drama"]] * 8)
    co_likes = _neighbours({2: [(6, 0.9), (5, 0.3)]}, 8)
    ctx = _ctx(catalog, shown=[2], liked=[2], actions=[1], co_likes=co_likes)
    ranked = _blend(neighbour_weight=1.0).recommend(ctx, 3)
    assert [c.index for c in ranked[:2]] == [6, 5]
    assert ranked[0].source == "neighbour:i2"  # "because you liked i2"
    # Without the like (or with the component off) item 6 has no special place.
    plain = _blend(neighbour_weight=1.0).recommend(_ctx(catalog, co_likes=co_likes), 8)
    assert all(c.source == "bandit" for c in plain)


def test_neighbours_of_a_disliked_item_are_pushed_down() -> None:
    catalog = _catalog([["Drama"]] * 6)
    co_likes = _neighbours({0: [(3, 0.9)]}, 6)
    ctx = _ctx(catalog, shown=[0], disliked=[0], actions=[-1], co_likes=co_likes, k=5)
    ranked = _blend(dislike_neighbour_weight=1.0).recommend(ctx, 5)
    assert ranked[-1].index == 3


def test_a_disliked_genre_sinks_for_that_user() -> None:
    genres = [["Horror"], ["Horror"], ["Comedy"], ["Comedy"], ["Horror"], ["Comedy"], ["Horror"], ["Comedy"]]
    catalog = _catalog(genres)
    ctx = _ctx(catalog, shown=[0, 1], disliked=[0, 1], actions=[-1, -1], k=4)
    ranked = _blend(taste_weight=2.0).recommend(ctx, 6)
    assert {catalog.genres_of(c.index)[0] for c in ranked[:3]} == {"Comedy"}
    assert catalog.genres_of(ranked[-1].index) == ("Horror",)


def test_liked_genre_rises() -> None:
    genres = [["Horror"], ["Comedy"]] * 6
    ctx = _ctx(_catalog(genres), shown=[0, 2], liked=[0, 2], actions=[1, 1], k=4)
    ranked = _blend(taste_weight=2.0).recommend(ctx, 4)
    assert all(ctx.catalog.genres_of(c.index) == ("Horror",) for c in ranked)
    assert ranked[0].source == "taste"


def test_a_late_item_gets_an_arm_and_can_be_shown() -> None:
    # Evidence for the first 3 items only (a snapshot older than the catalog); item 3 was added later.
    stats = ItemStats(
        likes=np.array([0, 0, 0], dtype=np.float32),
        dislikes=np.zeros(3, dtype=np.float32),
        impressions=np.array([50, 50, 50], dtype=np.float32),
    )
    catalog = _catalog([["Drama"]] * 4)
    ctx = _ctx(catalog, stats=stats, k=1)
    picked = _blend(prior_strength=2.0, prior_mean=0.3).recommend(ctx, 1)
    # Three arms with 50 silent impressions each against a fresh arm with an optimistic prior.
    assert picked[0].index == 3


def test_exploration_budget_spends_slots_on_under_shown_items() -> None:
    stats = ItemStats(
        likes=np.array([30, 30, 30, 30, 0, 0], dtype=np.float32),
        dislikes=np.zeros(6, dtype=np.float32),
        impressions=np.array([60, 60, 60, 60, 0, 0], dtype=np.float32),
    )
    ctx = _ctx(_catalog([["Drama"]] * 6), stats=stats, k=4)
    evidence_decides = {"prior_strength": 2.0, "prior_mean": 0.05}
    ranked = _blend(explore_slots=2.0, explore_below=1, **evidence_decides).recommend(ctx, 4)
    explored = [c.index for c in ranked if c.source == "explore"]
    assert sorted(explored) == [4, 5]
    # Without the budget, the proven items fill the answer.
    assert sorted(c.index for c in _blend(**evidence_decides).recommend(ctx, 4)) == [0, 1, 2, 3]


def test_a_run_of_dislikes_switches_the_neighbour_source_off() -> None:
    catalog = _catalog([["Drama"]] * 8)
    co_likes = _neighbours({1: [(7, 0.9)]}, 8)
    strategy = _blend(neighbour_weight=1.0, dislike_streak=3)
    kept = strategy.recommend(_ctx(catalog, shown=[1, 2], liked=[1], actions=[1, -1], co_likes=co_likes), 3)
    assert kept[0].index == 7
    assert kept[0].source == "neighbour:i1"
    switched = strategy.recommend(
        _ctx(catalog, shown=[1, 2, 3, 4], liked=[1], disliked=[2, 3, 4], actions=[1, -1, -1, -1], co_likes=co_likes),
        3,
    )
    assert all(not c.source.startswith("neighbour") for c in switched)


def test_never_returns_shown_items_and_fills_up_to_n() -> None:
    catalog = _catalog([["Drama"], ["Comedy"]] * 10)
    shown = list(range(0, 20, 3))
    strategy = BlendStrategy(BlendParams())
    for seed in range(20):
        ranked = strategy.recommend(_ctx(catalog, shown=shown, k=5, seed=seed), 12)
        indices = [c.index for c in ranked]
        assert len(indices) == 12 and len(set(indices)) == 12
        assert not set(indices) & set(shown)


def test_genre_cap_limits_any_one_genre_in_the_head() -> None:
    genres = [["Drama"]] * 6 + [["Comedy"], ["Action"], ["Horror"], ["Western"]]
    stats = ItemStats(
        likes=np.array([50] * 6 + [10] * 4, dtype=np.float32),
        dislikes=np.zeros(10, dtype=np.float32),
        impressions=np.full(10, 100, dtype=np.float32),
    )
    ctx = _ctx(_catalog(genres), stats=stats, k=5)
    evidence_decides = {"prior_strength": 2.0, "prior_mean": 0.05}
    capped = _blend(diversity_weight=0.01, genre_cap=2, **evidence_decides).recommend(ctx, 5)
    assert sum(1 for c in capped if c.index < 6) == 2
    uncapped = _blend(**evidence_decides).recommend(ctx, 5)
    assert all(c.index < 6 for c in uncapped)


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="prior_mean"):
        BlendParams(prior_mean=1.5)
    with pytest.raises(ValueError, match="diversity_weight"):
        BlendParams(diversity_weight=1.0)


# --- components ---


def test_co_like_neighbours_by_hand() -> None:
    # users 0,1 like items 0 and 1; user 2 likes 0 and 2; user 3 likes 3 only.
    users = np.array([0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 0, 1, 0, 2, 3])
    table = co_like_neighbours(users, items, n_items=4, n_neighbours=2, shrinkage=0.0)
    # cosine(0,1) = 2 / sqrt(3 * 2); cosine(0,2) = 1 / sqrt(3 * 1)
    assert table.indices[0].tolist() == [1, 2]
    np.testing.assert_allclose(table.similarities[0], [2 / np.sqrt(6), 1 / np.sqrt(3)], rtol=1e-6)
    assert table.indices[1, 0] == 0
    assert table.similarities[3].tolist() == [0.0, 0.0]  # no co-likes: no neighbours


def test_co_like_shrinkage_discounts_single_co_likes() -> None:
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 0, 1, 2, 3])
    table = co_like_neighbours(users, items, n_items=4, n_neighbours=1, shrinkage=2.0)
    # Items 2,3 co-liked once with cosine 1: 1 * 1/(1+2); items 0,1 twice with cosine 1: 1 * 2/(2+2).
    assert table.similarities[2, 0] == pytest.approx(1 / 3)
    assert table.similarities[0, 0] == pytest.approx(0.5)


def test_neighbour_scores_sum_similarities_and_remember_the_best_anchor() -> None:
    indices = np.array([[2, 3], [2, 0], [0, 0], [0, 0]], dtype=np.int32)
    sims = np.array([[0.5, 0.2], [0.4, 0.1], [0, 0], [0, 0]], dtype=np.float32)
    scores, anchor = neighbour_scores(4, np.array([0, 1]), indices, sims)
    np.testing.assert_allclose(scores, [0.1, 0.0, 0.9, 0.2], rtol=1e-6)
    assert anchor.tolist() == [1, -1, 0, 0]


def test_taste_scores_by_hand() -> None:
    catalog = _catalog([["A"], ["B"], ["A"], ["B"]])
    population = np.array([1.0, 1.0, 1.0, 1.0])  # equal likes per genre before the +1: (2+1)/(6) each
    scores = taste_scores(catalog, np.array([0]), np.array([], dtype=np.int64), population, 1.0, 0.0)
    # user share: genre 0 = (1 + 0.5)/(1 + 1) = 0.75, genre 1 = 0.25; lift = log(share / 0.5)
    np.testing.assert_allclose(scores, [np.log(1.5), np.log(0.5), np.log(1.5), np.log(0.5)])


def test_mmr_rerank_prefers_a_new_genre_over_a_slightly_better_repeat() -> None:
    genre_matrix = np.array([[1, 0], [1, 0], [0, 1]], dtype=bool)
    picked = mmr_rerank(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.8]), genre_matrix, 2, 0.5, 10)
    assert picked.tolist() == [0, 2]
    plain = mmr_rerank(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.8]), genre_matrix, 2, 0.0, 10)
    assert plain.tolist() == [0, 1]
