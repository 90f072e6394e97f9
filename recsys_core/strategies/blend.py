"""The production strategy: a Thompson bandit on like rate per impression, personalised and re-ranked.

Every component has a weight or a switch, so experiments can compare the blend with parts of it turned off:

* bandit: one posterior sample per request of each item's like rate per impression; arms for late items exist
  from the start (the evidence arrays are padded). (A prior mean per genre was measured to hurt: genre like
  rates are dominated by a few blockbusters and steer exploration into the wrong corners.);
* taste: the user's genre lift over the population, updated online from their likes and dislikes;
* neighbours: "because you liked X" from item-to-item neighbours (co-likes, and BPR item factors), with the
  neighbours of disliked items pushed down;
* bpr: the user's BPR scores when the model knows the user;
* session: after a run of dislikes the personal signals step back and the list broadens;
* exploration: a budget of slots for items shown fewer than ``explore_below`` times, matched to the taste;
* diversity: an MMR re-rank of the head with a cap on any one genre.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.personal import mmr_rerank, neighbour_scores, taste_scores
from recsys_core.algorithms.topk import top_k_indices
from recsys_core.catalog import CatalogView
from recsys_core.strategies.base import Candidate, ItemNeighbours, RecommendationContext, Strategy

# How many times the answer size the MMR re-rank considers.
MMR_POOL_FACTOR = 3


@dataclass(frozen=True, slots=True)
class BlendParams:
    # bandit: Beta(strength * mean + likes, strength * (1 - mean) + silent + dislike weights)
    prior_strength: float = 20.0
    prior_mean: float = 0.005
    # A dislike says the user watched the film: measured to raise, not lower, an item's global estimate.
    alpha_per_dislike: float = 2.0
    beta_per_dislike: float = 0.0
    beta_per_silent_impression: float = 1.0
    # Subtract this many posterior standard deviations from the exploitation sample: thin evidence (one lucky
    # like) must not outrank well-measured items; exploration slots still sample optimistically.
    exploit_pessimism: float = 0.5
    # personal components (0 switches one off)
    taste_weight: float = 0.5
    taste_smoothing: float = 5.0
    taste_dislike_weight: float = 1.0
    neighbour_weight: float = 0.5
    dislike_neighbour_weight: float = 0.0
    neighbour_recency_decay: float = 0.8
    bpr_weight: float = 0.1
    # session awareness: this many dislikes in a row switch personal signals off for the request
    dislike_streak: int = 0
    # exploration budget: expected slots per answer for items shown fewer than explore_below times
    explore_slots: float = 1.0
    explore_below: int = 1_000_000
    # diversity: 0 = plain ranking
    diversity_weight: float = 0.0
    genre_cap: int = 10

    def __post_init__(self) -> None:
        if self.prior_strength <= 0 or not 0 < self.prior_mean < 1:
            raise ValueError("prior_strength must be positive and prior_mean in (0, 1)")
        weights = (self.alpha_per_dislike, self.beta_per_dislike, self.beta_per_silent_impression)
        if min(weights) < 0 or self.explore_slots < 0 or not 0 <= self.diversity_weight < 1:
            raise ValueError("weights and explore_slots must be >= 0, diversity_weight in [0, 1)")


@dataclass(frozen=True, slots=True)
class _Scores:
    total: np.ndarray  # the exploitation score: a (pessimistic) posterior sample in log space + personal lift
    explore: np.ndarray  # the same draw without pessimism + personal lift
    personal: np.ndarray
    source: np.ndarray  # per item: index into SOURCES
    anchor: np.ndarray  # per item: the liked item whose neighbour it is (-1: none)

    def label(self, index: int, catalog: CatalogView) -> str:
        """Why an item is recommended, e.g. "bandit" or "neighbour:<liked item id>"."""
        source = SOURCES[self.source[index]]
        if source == "neighbour" and self.anchor[index] >= 0:
            return f"neighbour:{catalog.item_ids[self.anchor[index]]}"
        return source


SOURCES = ("bandit", "taste", "neighbour", "bpr")


@dataclass(frozen=True, slots=True)
class BlendStrategy(Strategy):
    name = "blend"
    params: BlendParams = BlendParams()

    def describe(self) -> dict[str, object]:
        return asdict(self.params)

    def recommend(self, ctx: RecommendationContext, n: int) -> list[Candidate]:
        if ctx.n_items == 0 or n <= 0:
            return []
        scores = self._score(ctx)
        k = min(ctx.k, n)
        n_explore = self._explore_count(ctx, k)
        explore = self._explore(ctx, scores, n_explore) if n_explore else np.empty(0, dtype=np.int64)
        exclude = ctx.profile.shown.copy()
        exclude[explore] = True
        head = self._head(ctx, scores, k - explore.size, exclude)
        exclude[head] = True
        spares = top_k_indices(scores.total, n - head.size - explore.size, exclude)
        candidates = [Candidate(int(i), scores.label(i, ctx.catalog)) for i in head]
        candidates += [Candidate(int(i), "explore") for i in explore]
        candidates += [Candidate(int(i), scores.label(i, ctx.catalog)) for i in spares]
        return candidates

    # --- scoring ---
    def _posterior(self, stats: ItemStats) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        silent = np.maximum(stats.impressions - stats.likes - stats.dislikes, 0.0)
        alpha = p.prior_strength * p.prior_mean + stats.likes + p.alpha_per_dislike * stats.dislikes
        beta = p.prior_strength * (1 - p.prior_mean) + p.beta_per_silent_impression * silent
        return alpha, beta + p.beta_per_dislike * stats.dislikes

    def _score(self, ctx: RecommendationContext) -> _Scores:
        p = self.params
        n_items = ctx.n_items
        alpha, beta = self._posterior(ctx.stats)
        sample = ctx.rng.beta(alpha, beta)
        # Exploration ranks by the plain sample (optimistic where evidence is thin); exploitation subtracts
        # ``exploit_pessimism`` posterior standard deviations from the same draw.
        raw = np.log(sample + 1e-6)
        if p.exploit_pessimism:
            total = alpha + beta
            sample -= p.exploit_pessimism * np.sqrt(alpha * beta / (total * total * (total + 1)))
            bandit = np.log(np.maximum(sample, 0.0) + 1e-6)
        else:
            bandit = raw

        # Personal lifts in log space; each item's source is the component that lifted it most (if > 0.05).
        personal = np.zeros(n_items)
        strongest = np.full(n_items, 0.05)
        source = np.zeros(n_items, dtype=np.int8)
        anchor = np.full(n_items, -1, dtype=np.int64)

        def add(component: np.ndarray, source_index: int) -> None:
            np.add(personal, component, out=personal)
            stronger = component > strongest
            strongest[stronger] = component[stronger]
            source[stronger] = source_index

        profile = ctx.profile
        switched_off = p.dislike_streak > 0 and profile.dislike_streak() >= p.dislike_streak
        if p.taste_weight and (profile.liked.size or profile.disliked.size):
            dislike_weight = p.taste_dislike_weight * (3.0 if switched_off else 1.0)
            taste = taste_scores(
                ctx.catalog, profile.liked, profile.disliked, ctx.stats.likes, p.taste_smoothing, dislike_weight
            )
            add(p.taste_weight * taste, SOURCES.index("taste"))
        if not switched_off:
            if (p.neighbour_weight and profile.liked.size) or (p.dislike_neighbour_weight and profile.disliked.size):
                lift, anchor = self._neighbour_component(ctx)
                add(lift, SOURCES.index("neighbour"))
            if p.bpr_weight and ctx.model is not None and ctx.model.knows(ctx.user_id):
                add(self._bpr_component(ctx), SOURCES.index("bpr"))
        return _Scores(bandit + personal, raw + personal, personal, source, anchor)

    def _neighbour_component(self, ctx: RecommendationContext) -> tuple[np.ndarray, np.ndarray]:
        """(lift, anchor): the summed neighbour lift per item and the liked item that contributed most."""
        p = self.params
        n_items = ctx.n_items
        total = np.zeros(n_items)
        anchor_of = np.full(n_items, -1, dtype=np.int64)
        best = np.zeros(n_items)
        liked, disliked = ctx.profile.liked, ctx.profile.disliked
        for table in self._neighbour_tables(ctx):
            if liked.size and p.neighbour_weight:
                # Recent likes pull harder: each like's weight decays with the number of likes after it.
                for position, anchor in enumerate(liked.tolist()):
                    weight = p.neighbour_weight * p.neighbour_recency_decay ** (liked.size - 1 - position)
                    score, _ = neighbour_scores(n_items, np.array([anchor]), table.indices, table.similarities)
                    contribution = weight * score
                    total += contribution
                    stronger = contribution > best
                    best[stronger] = contribution[stronger]
                    anchor_of[stronger] = anchor
            if disliked.size and p.dislike_neighbour_weight:
                score, _ = neighbour_scores(n_items, disliked, table.indices, table.similarities)
                total -= p.dislike_neighbour_weight * score
        return total, anchor_of

    @staticmethod
    def _neighbour_tables(ctx: RecommendationContext) -> list[ItemNeighbours]:
        tables = []
        if ctx.co_likes is not None:
            tables.append(ctx.co_likes)
        model = ctx.model
        if model is not None and model.neighbour_indices.size:
            tables.append(ItemNeighbours(model.neighbour_indices, model.neighbour_sims))
        return tables

    def _bpr_component(self, ctx: RecommendationContext) -> np.ndarray:
        assert ctx.model is not None
        scores = ctx.model.user_scores(ctx.user_id, ctx.n_items)
        if scores is None:
            return np.zeros(ctx.n_items)
        known = np.isfinite(scores) & ~ctx.profile.shown
        if known.sum() < 2:
            return np.zeros(ctx.n_items)
        standardized = np.zeros(ctx.n_items)
        values = scores[known]
        standardized[known] = (values - values.mean()) / (values.std() + 1e-9)
        return self.params.bpr_weight * standardized

    # --- exploration and the head ---
    def _explore_count(self, ctx: RecommendationContext, k: int) -> int:
        budget = self.params.explore_slots
        whole = int(budget)
        count = whole + int(ctx.rng.random() < budget - whole)
        return min(count, k)

    def _explore(self, ctx: RecommendationContext, scores: _Scores, count: int) -> np.ndarray:
        """Under-shown unseen items, most promising first by the plain posterior draw and the user's lift."""
        under_shown = (ctx.stats.impressions < self.params.explore_below) & ~ctx.profile.shown
        if not under_shown.any():
            return np.empty(0, dtype=np.int64)
        return top_k_indices(np.where(under_shown, scores.explore, -np.inf), count)

    def _head(self, ctx: RecommendationContext, scores: _Scores, count: int, exclude: np.ndarray) -> np.ndarray:
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        p = self.params
        if p.diversity_weight <= 0 and p.genre_cap >= count:
            return top_k_indices(scores.total, count, exclude)
        pool = top_k_indices(scores.total, count * MMR_POOL_FACTOR, exclude)
        if pool.size == 0:
            return pool
        values = scores.total[pool]
        spread = values.max() - values.min()
        relevance = (values - values.min()) / spread if spread > 0 else np.ones(pool.size)
        return mmr_rerank(pool, relevance, ctx.catalog.genre_matrix, count, p.diversity_weight, p.genre_cap)
