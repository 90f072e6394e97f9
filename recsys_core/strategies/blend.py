"""The production strategy: a Thompson bandit on like rate per impression, personalised and re-ranked.

Every component has a weight or a switch, so experiments can compare the blend with parts of it turned off:

* bandit: one posterior sample per request of each item's like rate per impression; arms for late items exist
  from the start (the evidence arrays are padded). Each arm's prior mean is learned from the arms with as many
  genres as it has: items tagged with more genres are liked more often, so exploration leans towards them.
  (A prior mean per genre was measured to hurt: genre like rates are dominated by a few blockbusters and steer
  exploration into the wrong corners; the group rate here counts each arm with at most two impressions.);
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

from recsys_core.algorithms.bandit import ItemStats, group_prior_means
from recsys_core.algorithms.personal import mmr_rerank, neighbour_entries, strongest_label, taste_scores
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
    # Prior mean per group of items with the same number of genres, learned from their evidence (0: off); each
    # arm counts with at most group_prior_item_cap impressions, this many pseudo-impressions at prior_mean.
    group_prior_shrinkage: float = 100.0
    group_prior_item_cap: float = 2.0
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
    # Posterior draws a replica keeps per bandit snapshot and shares among requests (0: a fresh draw each).
    posterior_draws: int = 16

    def __post_init__(self) -> None:
        if self.prior_strength <= 0 or not 0 < self.prior_mean < 1:
            raise ValueError("prior_strength must be positive and prior_mean in (0, 1)")
        weights = (self.alpha_per_dislike, self.beta_per_dislike, self.beta_per_silent_impression)
        if min(weights) < 0 or self.explore_slots < 0 or not 0 <= self.diversity_weight < 1:
            raise ValueError("weights and explore_slots must be >= 0, diversity_weight in [0, 1)")
        if self.group_prior_shrinkage < 0 or self.group_prior_item_cap <= 0:
            raise ValueError("group_prior_shrinkage must be >= 0 and group_prior_item_cap > 0")
        if self.posterior_draws < 0:
            raise ValueError("posterior_draws must be >= 0")


@dataclass(frozen=True, slots=True)
class _Posterior:
    """Each arm's Beta posterior on one bandit snapshot, and what every draw from it needs."""

    alpha: np.ndarray
    beta: np.ndarray
    pessimism: np.ndarray | None  # ``exploit_pessimism`` posterior standard deviations (None: off)
    explorable: np.ndarray  # arms that may fill an exploration slot


@dataclass(frozen=True, slots=True)
class _BanditDraw:
    """One posterior sample of every arm, in log space (shareable between requests on the same snapshot)."""

    exploit: np.ndarray  # the sample minus ``exploit_pessimism`` posterior standard deviations
    explore: np.ndarray  # the plain sample where the item is under-shown, -inf elsewhere


@dataclass(frozen=True, slots=True)
class _Scores:
    total: np.ndarray  # the exploitation score: the pessimistic log sample + personal lift
    explore: np.ndarray  # the plain log sample + personal lift (-inf: not an exploration candidate)
    components: tuple[np.ndarray | None, ...]  # personal lifts aligned with SOURCES[1:] (None: off)
    anchor: np.ndarray | None  # per item: the liked item whose neighbour it is (-1: none)

    def labels(self, indices: np.ndarray, catalog: CatalogView) -> list[str]:
        """Why each item is recommended: the component that lifted it most (if by > 0.05), else "bandit"."""
        present = [(name, c[indices]) for name, c in zip(SOURCES[1:], self.components, strict=True) if c is not None]
        if not present or indices.size == 0:
            return ["bandit"] * int(indices.size)
        # Row 0 is the threshold; argmax keeps the first of equal rows, so a source must beat it strictly.
        lifts = np.vstack([np.full(indices.size, 0.05)] + [values for _, values in present])
        names = ["bandit"] + [name for name, _ in present]
        result = []
        for index, winner in zip(indices.tolist(), np.argmax(lifts, axis=0).tolist(), strict=True):
            name = names[winner]
            if name == "neighbour" and self.anchor is not None and self.anchor[index] >= 0:
                name = f"neighbour:{catalog.item_ids[self.anchor[index]]}"
            result.append(name)
        return result


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
        shown = ctx.profile.shown
        explore = top_k_indices(scores.explore, n_explore, shown) if n_explore else np.empty(0, dtype=np.int64)
        exclude = shown.copy()
        exclude[explore] = True
        head_count = k - explore.size
        if self._plain_head(head_count):
            # One selection gives the head and the spares behind it, in order.
            ranked = top_k_indices(scores.total, n - explore.size, exclude)
            head, spares = ranked[:head_count], ranked[head_count:]
        else:
            head = self._diverse_head(ctx, scores, head_count, exclude)
            exclude[head] = True
            spares = top_k_indices(scores.total, n - head.size - explore.size, exclude)
        labels = scores.labels(np.concatenate([head, spares]), ctx.catalog)
        candidates = [Candidate(int(i), label) for i, label in zip(head.tolist(), labels[: head.size], strict=True)]
        candidates += [Candidate(int(i), "explore") for i in explore.tolist()]
        candidates += [Candidate(int(i), label) for i, label in zip(spares.tolist(), labels[head.size :], strict=True)]
        return candidates

    # --- scoring ---
    def _posterior(self, stats: ItemStats, catalog: CatalogView) -> _Posterior:
        p = self.params
        silent = np.maximum(stats.impressions - stats.likes - stats.dislikes, 0.0)
        successes = stats.likes + p.alpha_per_dislike * stats.dislikes
        mean: float | np.ndarray = p.prior_mean
        if p.group_prior_shrinkage > 0:
            groups = np.clip(catalog.genre_counts[: stats.impressions.size], 1, 5) - 1
            mean = group_prior_means(
                groups, successes, stats.impressions, p.prior_mean, p.group_prior_item_cap, p.group_prior_shrinkage
            )
        alpha = p.prior_strength * mean + successes
        beta = (
            p.prior_strength * (1 - mean) + p.beta_per_silent_impression * silent + p.beta_per_dislike * stats.dislikes
        )
        pessimism = None
        if p.exploit_pessimism:
            total = alpha + beta
            pessimism = p.exploit_pessimism * np.sqrt(alpha * beta / (total * total * (total + 1)))
        return _Posterior(alpha, beta, pessimism, stats.impressions < p.explore_below)

    @staticmethod
    def _draw_bandit(posterior: _Posterior, rng: np.random.Generator) -> _BanditDraw:
        sample = rng.beta(posterior.alpha, posterior.beta)
        # Exploration ranks by the plain sample (optimistic where evidence is thin); exploitation subtracts
        # ``exploit_pessimism`` posterior standard deviations from the same draw.
        raw = np.log(sample + 1e-6)
        if posterior.pessimism is not None:
            exploit = np.log(np.maximum(sample - posterior.pessimism, 0.0) + 1e-6)
        else:
            exploit = raw
        return _BanditDraw(exploit, np.where(posterior.explorable, raw, -np.inf))

    def _bandit(self, ctx: RecommendationContext) -> _BanditDraw:
        if ctx.draws is None:
            return self._draw_bandit(self._posterior(ctx.stats, ctx.catalog), ctx.rng)
        # The posterior depends only on the snapshot: computed once, shared by its draws.
        posterior = ctx.draws.once((self, "posterior"), lambda: self._posterior(ctx.stats, ctx.catalog))
        return ctx.draws.draw(self, self.params.posterior_draws, ctx.rng, lambda: self._draw_bandit(posterior, ctx.rng))

    def _score(self, ctx: RecommendationContext) -> _Scores:
        p = self.params
        draw = self._bandit(ctx)
        taste = neighbour = bpr = anchor = None
        profile = ctx.profile
        switched_off = p.dislike_streak > 0 and profile.dislike_streak() >= p.dislike_streak
        if p.taste_weight and (profile.liked.size or profile.disliked.size):
            dislike_weight = p.taste_dislike_weight * (3.0 if switched_off else 1.0)
            taste = p.taste_weight * taste_scores(
                ctx.catalog, profile.liked, profile.disliked, ctx.stats.likes, p.taste_smoothing, dislike_weight
            )
        if not switched_off:
            if (p.neighbour_weight and profile.liked.size) or (p.dislike_neighbour_weight and profile.disliked.size):
                neighbour, anchor = self._neighbour_component(ctx)
            if p.bpr_weight and ctx.model is not None and ctx.model.knows(ctx.user_id):
                bpr = self._bpr_component(ctx)
        components = (taste, neighbour, bpr)
        lifts = [c for c in components if c is not None]
        if not lifts:
            return _Scores(draw.exploit, draw.explore, components, anchor)
        personal = lifts[0] if len(lifts) == 1 else np.sum(lifts, axis=0)
        return _Scores(draw.exploit + personal, draw.explore + personal, components, anchor)

    def _neighbour_component(self, ctx: RecommendationContext) -> tuple[np.ndarray, np.ndarray]:
        """(lift, anchor): the summed neighbour lift per item and the liked item that contributed most."""
        p = self.params
        n_items = ctx.n_items
        liked, disliked = ctx.profile.liked, ctx.profile.disliked
        # Recent likes pull harder: each like's weight decays with the number of likes after it.
        like_weights = p.neighbour_weight * p.neighbour_recency_decay ** np.arange(liked.size - 1, -1, -1.0)
        rows: list[np.ndarray] = []
        lifts: list[np.ndarray] = []
        anchors: list[np.ndarray] = []
        for table in self._neighbour_tables(ctx):
            if liked.size and p.neighbour_weight:
                position, neighbour, similarity = neighbour_entries(liked, table.indices, table.similarities, n_items)
                rows.append(neighbour)
                lifts.append(like_weights[position] * similarity)
                anchors.append(liked[position])
            if disliked.size and p.dislike_neighbour_weight:
                _, neighbour, similarity = neighbour_entries(disliked, table.indices, table.similarities, n_items)
                rows.append(neighbour)
                lifts.append(-p.dislike_neighbour_weight * similarity)
                anchors.append(np.full(neighbour.size, -1, dtype=np.int64))
        if not rows:
            return np.zeros(n_items), np.full(n_items, -1, dtype=np.int64)
        row, lift, anchor = np.concatenate(rows), np.concatenate(lifts), np.concatenate(anchors)
        # Each item's anchor is the like with the largest single contribution.
        return np.bincount(row, weights=lift, minlength=n_items), strongest_label(row, lift, anchor, n_items)

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

    def _plain_head(self, count: int) -> bool:
        return self.params.diversity_weight <= 0 and self.params.genre_cap >= count

    def _diverse_head(self, ctx: RecommendationContext, scores: _Scores, count: int, exclude: np.ndarray) -> np.ndarray:
        """An MMR re-rank of the ``count * MMR_POOL_FACTOR`` best, with the genre cap."""
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        p = self.params
        pool = top_k_indices(scores.total, count * MMR_POOL_FACTOR, exclude)
        if pool.size == 0:
            return pool
        values = scores.total[pool]
        spread = values.max() - values.min()
        relevance = (values - values.min()) / spread if spread > 0 else np.ones(pool.size)
        return mmr_rerank(pool, relevance, ctx.catalog.genre_matrix, count, p.diversity_weight, p.genre_cap)
