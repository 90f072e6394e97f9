"""The blend strategy and its components on small hand-made cases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from typing import Unpack

import numpy as np
import pytest

from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.co_likes import co_like_neighbours
from recsys_core.algorithms.factors import FactorModel
from recsys_core.algorithms.personal import (
    mmr_rerank,
    neighbour_entries,
    neighbour_scores,
    population_genre_share,
    taste_scores,
)
from recsys_core.catalog import CatalogView
from recsys_core.strategies.base import DrawCache, ItemNeighbours, RecommendationContext, UserProfile
from recsys_core.strategies.blend import BlendParams, BlendStrategy, _Posterior, _Scores
from tests.support.params import BlendOverrides

# Flat bandit: a huge prior makes every item's posterior sample (almost) the same, so only the component
# under test decides the order.
FLAT: BlendOverrides = {
    "prior_strength": 1e7,
    "prior_mean": 0.05,
    "group_prior_shrinkage": 0.0,
    "exploit_pessimism": 0.0,
    "explore_slots": 0.0,
}
NO_PERSONAL: BlendOverrides = {
    "neighbour_weight": 0.0,
    "bpr_weight": 0.0,
    "taste_weight": 0.0,
    "dislike_neighbour_weight": 0.0,
}


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


def _blend(**params: Unpack[BlendOverrides]) -> BlendStrategy:
    merged: BlendOverrides = {**FLAT, **NO_PERSONAL, **params}
    return BlendStrategy(BlendParams(**merged))


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
    evidence_decides: BlendOverrides = {"prior_strength": 2.0, "prior_mean": 0.05}
    ranked = _blend(**(evidence_decides | {"explore_slots": 2.0, "explore_below": 1})).recommend(ctx, 4)
    explored = [c.index for c in ranked if c.source == "explore"]
    assert sorted(explored) == [4, 5]
    # Without the budget, the proven items fill the answer.
    assert sorted(c.index for c in _blend(**evidence_decides).recommend(ctx, 4)) == [0, 1, 2, 3]


def _mixed_evidence(n: int) -> ItemStats:
    rng = np.random.default_rng(7)
    impressions = rng.integers(0, 40, n).astype(np.float32)
    likes = np.floor(impressions * rng.uniform(0, 0.5, n)).astype(np.float32)
    return ItemStats(likes=likes, dislikes=np.zeros(n, dtype=np.float32), impressions=impressions)


def test_a_one_item_answer_explores_with_the_budgets_share_of_a_default_list() -> None:
    catalog = _catalog([["Drama"], ["Comedy"]] * 20)
    strategy = BlendStrategy(BlendParams(explore_slots=1.0))
    sources = [
        strategy.recommend(_ctx(catalog, stats=_mixed_evidence(40), k=1, seed=seed), 1)[0].source for seed in range(400)
    ]
    explored = sources.count("explore")
    # One slot in ten of a default list: about 40 of 400 (it used to be every answer).
    assert 15 <= explored <= 70
    # A budget of a whole default list or more is capped as that list is: 9 slots in 10, never every answer.
    greedy = BlendStrategy(BlendParams(explore_slots=12.0))
    greedy_sources = [
        greedy.recommend(_ctx(catalog, stats=_mixed_evidence(40), k=1, seed=seed), 1)[0].source for seed in range(400)
    ]
    assert 300 <= greedy_sources.count("explore") <= 390


def test_exploration_never_takes_every_slot_of_a_longer_answer() -> None:
    catalog = _catalog([["Drama"], ["Comedy"]] * 20)
    strategy = BlendStrategy(BlendParams(explore_slots=5.0))
    for k in (2, 3, 5):
        for seed in range(20):
            head = strategy.recommend(_ctx(catalog, stats=_mixed_evidence(40), k=k, seed=seed), k)
            assert len(head) == k
            assert sum(c.source == "explore" for c in head) == min(5, k - 1)


@pytest.mark.parametrize("explore_slots", [0.0, 0.4, 1.0, 2.5, 9.0])
def test_the_default_list_of_ten_explores_as_before(monkeypatch: pytest.MonkeyPatch, explore_slots: float) -> None:
    catalog = _catalog([["Drama"], ["Comedy"], ["Action", "Drama"]] * 20)
    strategy = BlendStrategy(BlendParams(explore_slots=explore_slots))

    def answers() -> list[list[tuple[int, str]]]:
        return [
            [
                (c.index, c.source)
                for c in strategy.recommend(_ctx(catalog, stats=_mixed_evidence(60), k=10, seed=s), 15)
            ]
            for s in range(30)
        ]

    current = answers()

    def explore_count_before_the_k1_fix(self: BlendStrategy, ctx: RecommendationContext, k: int) -> int:
        budget = self.params.explore_slots
        whole = int(budget)
        return min(whole + int(ctx.rng.random() < budget - whole), k)

    monkeypatch.setattr(BlendStrategy, "_explore_count", explore_count_before_the_k1_fix)
    assert current == answers()


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


def test_a_run_of_dislikes_keeps_the_taste_on_with_three_times_the_dislike_weight() -> None:
    catalog = _catalog([["Drama"], ["Comedy"], ["Drama"], ["Comedy"], ["Drama"], ["Comedy"]])
    co_likes = _neighbours({1: [(5, 0.9)]}, 6)
    params: BlendOverrides = {"taste_weight": 1.0, "neighbour_weight": 1.0}
    streak = _ctx(catalog, shown=[0, 1, 2], liked=[1], disliked=[0, 2], actions=[1, -1, -1], co_likes=co_likes)
    during = _blend(**(params | {"dislike_streak": 2}))._personal(streak)
    assert during.neighbour is None and during.bpr is None
    tripled = _blend(**(params | {"dislike_streak": 0, "taste_dislike_weight": 3.0}))._personal(streak)
    assert during.genre_lift is not None and tripled.genre_lift is not None
    np.testing.assert_allclose(during.genre_lift, tripled.genre_lift)


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
    evidence_decides: BlendOverrides = {"prior_strength": 2.0, "prior_mean": 0.05}
    capped = _blend(**(evidence_decides | {"diversity_weight": 0.01, "genre_cap": 2})).recommend(ctx, 5)
    assert sum(1 for c in capped if c.index < 6) == 2
    uncapped = _blend(**evidence_decides).recommend(ctx, 5)
    assert all(c.index < 6 for c in uncapped)


def test_an_untried_item_is_explored_like_the_items_with_as_many_genres() -> None:
    # Items 0-3 have three genres, 4-7 one. Two of each were shown twice: the three-genre ones got a like each.
    catalog = _catalog([["Action", "Comedy", "Drama"]] * 4 + [["Drama"]] * 4)
    stats = ItemStats(
        likes=np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=np.float32),
        dislikes=np.zeros(8, dtype=np.float32),
        impressions=np.array([2, 2, 0, 0, 2, 2, 0, 0], dtype=np.float32),
    )
    # A strong prior, so each untried arm's sample sits at its prior mean: the group's learned rate.
    grouped = _blend(prior_strength=5000.0, prior_mean=0.01, group_prior_shrinkage=10.0)
    flat = _blend(prior_strength=5000.0, prior_mean=0.01, group_prior_shrinkage=0.0)
    picks_grouped: set[int] = set()
    picks_flat: set[int] = set()
    for seed in range(20):
        ctx = _ctx(catalog, stats=stats, shown=[0, 1, 4, 5], k=2, seed=seed)
        picks_grouped.update(c.index for c in grouped.recommend(ctx, 2))
        picks_flat.update(c.index for c in flat.recommend(ctx, 2))
    assert picks_grouped == {2, 3}
    assert picks_flat == {2, 3, 6, 7}  # without the group prior the untried arms are alike


def test_the_group_prior_pools_no_genres_with_one_and_five_or_more_together() -> None:
    # Pins the measured grouping the docs describe: 1, 2, 3, 4, 5+ genres, with no genres counting as one.
    many = ["Action", "Comedy", "Drama", "Horror", "Western", "Crime"]
    genres = [[], ["Drama"], many[:5], many, ["Drama"], many[:5]]
    stats = ItemStats(  # only items 4 (one genre) and 5 (five genres) have evidence, at different rates
        likes=np.array([0, 0, 0, 0, 2, 0], dtype=np.float32),
        dislikes=np.zeros(6, dtype=np.float32),
        impressions=np.array([0, 0, 0, 0, 2, 2], dtype=np.float32),
    )
    posterior = BlendStrategy(BlendParams(group_prior_shrinkage=1.0))._posterior(stats, _catalog(genres))
    mean = posterior.alpha / (posterior.alpha + posterior.beta)
    assert mean[0] == mean[1]  # no genres: the one-genre group
    assert mean[3] == mean[2]  # six genres: the 5+ group
    assert mean[1] > mean[2]


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="prior_mean"):
        BlendParams(prior_mean=1.5)
    with pytest.raises(ValueError, match="diversity_weight"):
        BlendParams(diversity_weight=1.0)
    with pytest.raises(ValueError, match="group_prior"):
        BlendParams(group_prior_item_cap=0.0)
    with pytest.raises(ValueError, match="taste_smoothing"):
        BlendParams(taste_smoothing=0.0)
    with pytest.raises(ValueError, match="neighbour_recency_decay"):
        BlendParams(neighbour_recency_decay=0.0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("parameter", [f.name for f in fields(BlendParams)])
def test_every_param_must_be_finite(parameter: str, value: float) -> None:
    # NaN passes every comparison the other checks make, and infinity the sign checks.
    with pytest.raises(ValueError, match=f"^{parameter} must be a finite number"):
        BlendParams(**{parameter: value})  # type: ignore[arg-type]  # NaN and inf for the int fields too


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


# --- posterior draws shared per snapshot, and the fast scoring against a dense reference ---


def test_draw_cache_draws_fresh_up_to_capacity_then_reuses() -> None:
    cache = DrawCache()
    rng = np.random.default_rng(0)
    made: list[int] = []

    def make() -> int:
        made.append(len(made))
        return made[-1]

    first = [cache.draw("a", 3, rng, make) for _ in range(3)]
    assert first == [0, 1, 2]
    reused = {cache.draw("a", 3, rng, make) for _ in range(50)}
    assert len(made) == 3 and reused == {0, 1, 2}  # no new draw, and every kept draw gets used
    assert cache.draw("b", 3, rng, make) == 3  # another strategy keeps its own draws
    assert [cache.draw("c", 0, rng, make) for _ in range(2)] == [4, 5]  # capacity 0: always fresh
    assert len(cache) == 4
    assert [cache.once("p", make) for _ in range(3)] == [6, 6, 6]  # computed once, then shared
    assert cache.once("q", make) == 7


def test_the_posterior_is_computed_once_per_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = _catalog([["Drama"], ["Comedy", "Drama"]] * 50)
    stats = ItemStats(
        likes=np.ones(100, dtype=np.float32), dislikes=np.zeros(100, dtype=np.float32), impressions=np.full(100, 4.0)
    )
    computed = []
    original = BlendStrategy._posterior

    def counting(self: BlendStrategy, stats: ItemStats, catalog: CatalogView) -> _Posterior:
        computed.append(1)
        return original(self, stats, catalog)

    monkeypatch.setattr(BlendStrategy, "_posterior", counting)
    strategy = BlendStrategy(BlendParams(posterior_draws=4))
    for snapshots in (1, 2):
        cache = DrawCache()  # a new bandit snapshot
        for seed in range(10):
            strategy.recommend(replace(_ctx(catalog, stats=stats, k=5, seed=seed), draws=cache), 5)
        assert len(cache) == 4 and len(computed) == snapshots
    strategy.recommend(_ctx(catalog, stats=stats, k=5), 5)  # no shared draws: the request computes its own
    assert len(computed) == 3


def test_requests_on_one_snapshot_share_at_most_posterior_draws_samples() -> None:
    catalog = _catalog([["Drama"], ["Comedy"]] * 200)
    stats = ItemStats(
        likes=np.zeros(400, dtype=np.float32), dislikes=np.zeros(400, dtype=np.float32), impressions=np.full(400, 5.0)
    )
    cache = DrawCache()
    strategy = BlendStrategy(BlendParams(posterior_draws=4, explore_slots=0.0))
    lists = set()
    for seed in range(40):
        ctx = replace(_ctx(catalog, stats=stats, k=10, seed=seed), draws=cache)
        lists.add(tuple(c.index for c in strategy.recommend(ctx, 10)))
    assert len(cache) == 4
    assert len(lists) == 4  # an empty profile ranks exactly by the draw: one list per kept draw
    # Without a cache (or with posterior_draws=0) every request draws: 40 different lists.
    fresh = BlendStrategy(BlendParams(posterior_draws=0, explore_slots=0.0))
    unshared = {
        tuple(c.index for c in fresh.recommend(replace(_ctx(catalog, stats=stats, k=10, seed=s), draws=cache), 10))
        for s in range(40)
    }
    assert len(unshared) == 40


def _dense_reference(strategy: BlendStrategy, ctx: RecommendationContext, n: int) -> list[int]:
    """The blend's exploitation ranking written out plainly over every item (no exploration, no MMR)."""
    p = strategy.params
    stats, profile = ctx.stats, ctx.profile
    silent = np.maximum(stats.impressions - stats.likes - stats.dislikes, 0.0)
    successes = stats.likes + p.alpha_per_dislike * stats.dislikes
    # The group prior: per number of genres (1..5+), the shown items' like rates, each counted at most cap times.
    genre_counts = np.clip(ctx.catalog.genre_matrix.sum(axis=1), 1, 5)
    mean = np.empty(ctx.n_items)
    for count in range(1, 6):
        members = genre_counts == count
        weight = np.minimum(stats.impressions[members], p.group_prior_item_cap)
        rate = np.where(
            stats.impressions[members] > 0, successes[members] / np.maximum(stats.impressions[members], 1), 0
        )
        group_mean = (np.sum(weight * rate) + p.group_prior_shrinkage * p.prior_mean) / (
            np.sum(weight) + p.group_prior_shrinkage
        )
        mean[members] = np.clip(group_mean, 1e-4, 0.5)
    alpha = p.prior_strength * mean + successes
    beta = p.prior_strength * (1 - mean) + p.beta_per_silent_impression * silent
    beta = beta + p.beta_per_dislike * stats.dislikes
    sample = np.random.default_rng(99).beta(alpha, beta)  # the draw the strategy makes first from seed 99
    total_ab = alpha + beta
    sample = sample - p.exploit_pessimism * np.sqrt(alpha * beta / (total_ab * total_ab * (total_ab + 1)))
    score = np.log(np.maximum(sample, 0.0) + 1e-6)
    score += p.taste_weight * taste_scores(
        ctx.catalog, profile.liked, profile.disliked, stats.likes, p.taste_smoothing, p.taste_dislike_weight
    )
    assert ctx.co_likes is not None
    for position, anchor in enumerate(profile.liked.tolist()):
        weight = p.neighbour_weight * p.neighbour_recency_decay ** (profile.liked.size - 1 - position)
        lift, _ = neighbour_scores(ctx.n_items, np.array([anchor]), ctx.co_likes.indices, ctx.co_likes.similarities)
        score += weight * lift
    dislike_lift, _ = neighbour_scores(ctx.n_items, profile.disliked, ctx.co_likes.indices, ctx.co_likes.similarities)
    score -= p.dislike_neighbour_weight * dislike_lift
    score[profile.shown] = -np.inf
    return np.argsort(-score, kind="stable")[:n].tolist()


@pytest.mark.parametrize("seed", range(5))
def test_blend_ranks_exactly_as_the_dense_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 600
    genres = [["Drama"], ["Comedy"], ["Horror", "Drama"], ["Action"], ["Comedy", "Romance"]]
    catalog = _catalog([genres[i % len(genres)] for i in range(n)])
    impressions = rng.poisson(20, n).astype(np.float32)
    stats = ItemStats(
        likes=np.minimum(rng.poisson(2, n), impressions).astype(np.float32),
        dislikes=np.zeros(n, dtype=np.float32),
        impressions=impressions,
    )
    co_likes = ItemNeighbours(rng.integers(0, n, (n, 8)).astype(np.int32), rng.random((n, 8)).astype(np.float32))
    liked, disliked = rng.choice(n, 5, replace=False), rng.choice(n, 3, replace=False)
    shown = np.concatenate([liked, disliked, rng.choice(n, 20)])
    params = BlendParams(explore_slots=0.0, dislike_neighbour_weight=0.5, posterior_draws=0)
    strategy = BlendStrategy(params)
    ctx = _ctx(catalog, stats=stats, shown=shown, liked=liked, disliked=disliked, co_likes=co_likes, k=10, seed=99)
    ranked = strategy.recommend(ctx, 30)
    assert [c.index for c in ranked] == _dense_reference(strategy, ctx, 30)
    sources = {c.source.split(":")[0] for c in ranked}
    assert sources <= {"bandit", "taste", "neighbour"}


def test_neighbour_entries_flatten_the_anchors_rows() -> None:
    indices = np.array([[2, 9], [3, 0], [0, 0]], dtype=np.int32)  # 9 is outside a 4-item catalog
    sims = np.array([[0.5, 0.7], [-0.2, 0.1], [0, 0]], dtype=np.float32)
    positions, items, similarities = neighbour_entries(np.array([1, 0, 7]), indices, sims, 4)
    assert positions.tolist() == [0, 0, 1]  # anchor 7 has no row; item 9 is not in the catalog
    assert items.tolist() == [3, 0, 2]
    np.testing.assert_allclose(similarities, [0.0, 0.1, 0.5], rtol=1e-6)  # clipped at 0


# --- cases pinned after hand-made mutation testing (each fails on a mutant the tests above let through) ---


def test_population_genre_share_adds_one_like_per_genre() -> None:
    catalog = _catalog([["A"], ["B"], ["A", "B"]])
    # Likes per genre: A = 2 + 1 = 3, B = 0 + 1 = 1; +1 each: 4 and 2 of 6.
    share = population_genre_share(catalog, np.array([2.0, 0.0, 1.0]))
    np.testing.assert_allclose(share, [4 / 6, 2 / 6])
    # A genre nobody liked yet still has a share (1 of 3 here), so a user's log-lift over it stays finite.
    np.testing.assert_allclose(population_genre_share(catalog, np.array([1.0, 0.0, 0.0])), [2 / 3, 1 / 3])


def test_taste_scores_subtract_the_smoothed_share_of_disliked_genres() -> None:
    catalog = _catalog([["A"], ["B"]])
    # Population share 1/2 each; no likes, so the user's like share is the population's (lift 0).
    # One dislike of A, smoothing 1: share = (1, 0) / (1 + 1); lift = -weight * share = (-0.5, 0).
    scores = taste_scores(catalog, np.array([], dtype=np.int64), np.array([0]), np.array([1.0, 1.0]), 1.0, 1.0)
    np.testing.assert_allclose(scores, [-0.5, 0.0], atol=1e-12)


def test_a_zero_similarity_padding_entry_names_no_anchor() -> None:
    # Anchor 0 has one real neighbour (item 2) and a padding entry (item 0, similarity 0), as co_like_neighbours
    # leaves in a row with fewer neighbours than its width: item 0 is nobody's neighbour.
    indices = np.array([[2, 0], [0, 0], [0, 0]], dtype=np.int32)
    sims = np.array([[0.5, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    scores, anchor = neighbour_scores(3, np.array([0]), indices, sims)
    np.testing.assert_allclose(scores, [0.0, 0.0, 0.5])
    assert anchor.tolist() == [-1, -1, 0]


def test_mmr_rerank_uses_the_jaccard_of_the_genre_sets() -> None:
    # After item 0 ({A, B}), item 1 ({A}) has Jaccard 1/2 with it: 0.5 * 0.9 - 0.5 * 0.5 = 0.2 < 0.25, the
    # objective of item 2 ({C}) at 0.5 * 0.5. (As overlap / (sum of sizes), 1/3, item 1 would win with 0.283.)
    genre_matrix = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=bool)
    picked = mmr_rerank(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.5]), genre_matrix, 2, 0.5, 10)
    assert picked.tolist() == [0, 2]


def test_a_diverse_head_is_not_repeated_among_the_spares() -> None:
    catalog = _catalog([["Drama"], ["Comedy"], ["Drama", "Action"], ["Horror"]] * 5)
    strategy = BlendStrategy(BlendParams(diversity_weight=0.3, genre_cap=2))
    for seed in range(10):
        ranked = strategy.recommend(_ctx(catalog, shown=[0, 5], k=5, seed=seed), 12)
        indices = [c.index for c in ranked]
        assert len(indices) == 12 and len(set(indices)) == 12, indices
        assert not {0, 5} & set(indices)


def test_the_posterior_counts_dislikes_silent_impressions_and_the_explorable_by_hand() -> None:
    stats = ItemStats(
        likes=np.array([1, 0, 2, 0], dtype=np.float32),
        dislikes=np.array([1, 2, 0, 0], dtype=np.float32),
        # item 1: answered twice with one impression (an answer without a /recs): no negative silent count
        impressions=np.array([5, 1, 3, 0], dtype=np.float32),
    )
    params = BlendParams(
        prior_strength=10.0,
        prior_mean=0.1,
        group_prior_shrinkage=0.0,
        alpha_per_dislike=2.0,
        beta_per_dislike=0.5,
        beta_per_silent_impression=1.0,
        explore_below=3,
    )
    posterior = BlendStrategy(params)._posterior(stats, _catalog([["Drama"]] * 4))
    # alpha = 10 * 0.1 + likes + 2 * dislikes; beta = 10 * 0.9 + max(impressions - likes - dislikes, 0) + 0.5 * dislikes
    np.testing.assert_allclose(posterior.alpha, [4.0, 5.0, 3.0, 1.0])
    np.testing.assert_allclose(posterior.beta, [12.5, 10.0, 10.0, 9.0])
    assert posterior.explorable.tolist() == [False, True, False, True]  # shown fewer than 3 times


def test_each_neighbour_names_the_like_it_came_from() -> None:
    catalog = _catalog([["Drama"]] * 8)
    co_likes = _neighbours({1: [(5, 0.9)], 2: [(6, 0.8)]}, 8)
    ctx = _ctx(catalog, shown=[1, 2], liked=[1, 2], actions=[1, 1], co_likes=co_likes)
    ranked = _blend(neighbour_weight=1.0).recommend(ctx, 3)
    # Item 6 (0.8 from the latest like) before item 5 (0.9 x the decay 0.8 of the earlier like).
    assert [(c.index, c.source) for c in ranked[:2]] == [(6, "neighbour:i2"), (5, "neighbour:i1")]


def test_the_bpr_lift_is_the_weighted_standardised_score_over_unshown_items() -> None:
    catalog = _catalog([["Drama"]] * 4)
    model = FactorModel(
        version=1,
        user_ids=np.array(["u"]),
        user_factors=np.array([[1.0]], dtype=np.float32),
        item_ids=np.array(catalog.item_ids),
        item_factors=np.array([[10.0], [1.0], [2.0], [3.0]], dtype=np.float32),
        neighbour_indices=np.zeros((0, 0), dtype=np.int32),
        neighbour_sims=np.zeros((0, 0), dtype=np.float32),
    )
    ctx = replace(_ctx(catalog, shown=[0]), model=model, user_vector=model.user_vector("u"))
    bpr = _blend(bpr_weight=0.2)._personal(ctx).bpr
    assert bpr is not None
    # Standardised over the unshown items 1..3 (scores 1, 2, 3: mean 2, std sqrt(2/3)); the shown item gets 0.
    step = 0.2 / np.sqrt(2 / 3)
    np.testing.assert_allclose(bpr, [0.0, -step, 0.0, step], rtol=1e-6)


def test_a_component_names_an_item_only_when_it_lifts_it_by_more_than_005() -> None:
    taste = np.array([0.0, 0.04, 0.06, 0.3])
    scores = _Scores(None, np.zeros(4), np.zeros(4), (taste, None, None), None)
    assert scores.labels(np.arange(4), _catalog([["Drama"]] * 4)) == ["bandit", "bandit", "taste", "taste"]


def test_a_neighbour_of_the_first_catalog_item_names_it() -> None:
    catalog = _catalog([["Drama"]] * 6)
    co_likes = _neighbours({0: [(4, 0.9)]}, 6)
    ctx = _ctx(catalog, shown=[0], liked=[0], actions=[1], co_likes=co_likes)
    ranked = _blend(neighbour_weight=1.0).recommend(ctx, 3)
    assert (ranked[0].index, ranked[0].source) == (4, "neighbour:i0")  # index 0 is an anchor like any other


def test_an_answer_shorter_than_k_never_holds_more_than_n_items() -> None:
    catalog = _catalog([["Drama"], ["Comedy"]] * 20)
    strategy = BlendStrategy(BlendParams(explore_slots=5.0))
    for seed in range(10):
        ranked = strategy.recommend(_ctx(catalog, stats=_mixed_evidence(40), k=10, seed=seed), 3)
        assert len(ranked) == 3 and len({c.index for c in ranked}) == 3
        assert sum(c.source == "explore" for c in ranked) <= 2  # the budget is capped at n - 1 as at k - 1


def test_the_diverse_head_rescales_the_pools_scores_to_0_1() -> None:
    # Log scores -1, -1.1, -3: relevance (1, 0.95, 0). After item 0, item 1 repeats its genre (Jaccard 1):
    # 0.5 * 0.95 - 0.5 * 1 < 0.5 * 0 for item 2, so the Comedy comes second. On the raw log scale the gap of 1.9
    # to item 2 would outweigh the repeat and the head would be all Drama.
    catalog = _catalog([["Drama"], ["Drama"], ["Comedy"]])
    total = np.array([-1.0, -1.1, -3.0])
    scores = _Scores(None, total, total.copy(), (None, None, None), None)
    strategy = _blend(diversity_weight=0.5)
    head = strategy._diverse_head(_ctx(catalog), scores, np.array([0, 1, 2]), 2)
    assert head.tolist() == [0, 2]
