"""The production strategy: a Thompson bandit on like rate per impression, personalised and re-ranked.

Every component has a weight or a switch, so experiments can compare the blend with parts of it turned off:

* bandit: one posterior sample per request of each item's like rate per impression; arms for late items exist
  from the start (the evidence arrays are padded). Each arm's prior mean is learned from the arms in its genre
  count group: 1, 2, 3, 4 or 5+ genres, an item without genres counting as one with one (the grouping was tuned
  by measurement, see BENCHMARKS.md). Items tagged with more genres are liked more often, so exploration leans
  towards them.
  (A prior mean per genre was measured to hurt: genre like rates are dominated by a few blockbusters and steer
  exploration into the wrong corners; the group rate here counts each arm with at most two impressions.);
* taste: the user's genre lift over the population, updated online from their likes and dislikes;
* neighbours: "because you liked X" from item-to-item neighbours (co-likes, and BPR item factors), with the
  neighbours of disliked items pushed down;
* bpr: the user's BPR scores when the model knows the user;
* session: after a run of dislikes the neighbour and BPR lifts are off for the request and the taste weighs the
  user's dislikes three times as much, so the list moves away from what was just refused;
* exploration: a budget of slots for items shown fewer than ``explore_below`` times, matched to the taste;
* diversity: an MMR re-rank of the head with a cap on any one genre.

Cost: a request ranks a universe of candidates first, each posterior draw's ``HEAD_SIZE`` best arms plus the
neighbours of the user's likes. Every other arm's score is bounded by the draw's cut plus the largest lift
taste and BPR can give; when the answer's last item beats that bound the answer is exactly the one over every
arm, and otherwise (rare: early evidence, or a user who has seen the whole head) the request ranks every arm.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np

from recsys_core.algorithms.bandit import ItemStats, group_prior_means, require_finite
from recsys_core.algorithms.personal import (
    genre_lift,
    mmr_rerank,
    neighbour_entries,
    population_genre_share,
    strongest_label,
)
from recsys_core.algorithms.topk import top_k_indices
from recsys_core.algorithms.twins import DenseTwinLift
from recsys_core.catalog import CatalogView
from recsys_core.strategies.base import Candidate, ItemNeighbours, RecommendationContext, Strategy

# How many times the answer size the MMR re-rank considers.
MMR_POOL_FACTOR = 3
# Per posterior draw, how many of the best arms (by each sample) a request ranks before any other arm: with a
# bound on the personal lift, an answer from them alone is exact or the request ranks every arm.
HEAD_SIZE = 256
# ``explore_slots`` is a budget per answer of this many items (the API's default k, schemas.DEFAULT_K, on which it
# was tuned); a one-item answer explores with probability explore_slots / this.
EXPLORE_BUDGET_LIST_LENGTH = 10

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BlendParams:
    # bandit: Beta(strength * mean + likes, strength * (1 - mean) + silent + dislike weights)
    prior_strength: float = 20.0
    prior_mean: float = 0.005
    # Prior mean per genre count group (1, 2, 3, 4, 5+; no genres counts as one), learned from the groups'
    # evidence (0: off); each arm counts with at most group_prior_item_cap impressions, this many
    # pseudo-impressions at prior_mean.
    group_prior_shrinkage: float = 100.0
    group_prior_item_cap: float = 2.0
    # A dislike says the user watched the film: measured to raise, not lower, an item's global estimate.
    alpha_per_dislike: float = 2.0
    beta_per_dislike: float = 0.0
    beta_per_silent_impression: float = 1.0
    # Subtract this many posterior standard deviations from the exploitation sample (thin evidence, one lucky like,
    # then ranks below well-measured items). Off since twins: the plain sample scored higher in the replay on 13 of
    # 16 seeds (+0.007), as the 4th list of a user needs the arms with thin evidence (BENCHMARKS.md, ninth session).
    exploit_pessimism: float = 0.0
    # personal components (0 switches one off)
    taste_weight: float = 0.5
    taste_smoothing: float = 5.0
    taste_dislike_weight: float = 1.0
    neighbour_weight: float = 0.5
    dislike_neighbour_weight: float = 0.0
    neighbour_recency_decay: float = 0.8
    bpr_weight: float = 0.1
    # users who answered like this one: P(like) = liked + (1 - shown) * the blend's score (0: off)
    twin_weight: float = 1.0
    # session awareness: this many dislikes in a row (0: off) switch the neighbour and BPR lifts off for the
    # request and triple the taste's dislike weight (the taste stays on, to steer away from the disliked genres)
    dislike_streak: int = 0
    # exploration budget: expected slots per answer for items shown fewer than explore_below times; never every
    # slot of an answer of k > 1 (at most k - 1), and at k = 1 the chance explore_slots / 10
    explore_slots: float = 1.0
    explore_below: int = 1_000_000
    # diversity: 0 = plain ranking
    diversity_weight: float = 0.0
    genre_cap: int = 10
    # Posterior draws a replica keeps per bandit snapshot and shares among requests (0: a fresh draw each).
    posterior_draws: int = 16

    def __post_init__(self) -> None:
        require_finite(self)
        if self.prior_strength <= 0 or not 0 < self.prior_mean < 1:
            raise ValueError("prior_strength must be positive and prior_mean in (0, 1)")
        weights = (self.alpha_per_dislike, self.beta_per_dislike, self.beta_per_silent_impression)
        if min(weights) < 0 or self.explore_slots < 0 or not 0 <= self.diversity_weight < 1:
            raise ValueError("weights and explore_slots must be >= 0, diversity_weight in [0, 1)")
        if self.group_prior_shrinkage < 0 or self.group_prior_item_cap <= 0:
            raise ValueError("group_prior_shrinkage must be >= 0 and group_prior_item_cap > 0")
        if self.posterior_draws < 0:
            raise ValueError("posterior_draws must be >= 0")
        # A taste without smoothing divides by zero for genres the population has not liked yet (NaN scores).
        if self.taste_smoothing <= 0 or not 0 < self.neighbour_recency_decay <= 1:
            raise ValueError("taste_smoothing must be > 0 and neighbour_recency_decay in (0, 1]")


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
    # The draw's head: its HEAD_SIZE best arms by ``exploit`` and by ``explore``, as a mask and as indices.
    head: np.ndarray
    head_indices: np.ndarray
    exploit_cut: float  # no arm outside the head has a higher ``exploit`` (-inf: the head is every arm)
    explore_cut: float  # the same for ``explore``


def _over(values: np.ndarray, universe: np.ndarray | None) -> np.ndarray:
    """``values`` (rows per catalog item) taken over a universe of candidates (None: every item)."""
    return values if universe is None else values[universe]


def _best_and_cut(values: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The ``size`` largest values' indices (any order) and the largest value among the rest."""
    if values.size <= size:
        return np.arange(values.size), -np.inf
    part = np.argpartition(-values, size)
    return part[:size], float(values[part[size]])


@dataclass(frozen=True, slots=True)
class _Personal:
    """One request's personal lifts, before they are taken over a universe of candidates."""

    genre_lift: np.ndarray | None  # taste_weight x the user's lift per genre (None: off)
    neighbour: np.ndarray | None  # per item (None: off)
    anchor: np.ndarray | None  # per item: the liked item whose neighbour it is (-1: none)
    bpr: np.ndarray | None  # per item (None: off)

    def upper_bound_outside(self) -> float:
        """A bound on the lift of any item with no positive neighbour lift (those are always candidates)."""
        bound = 0.0
        if self.genre_lift is not None:
            # An item's taste is the mean of its genres' lifts (0 without genres): at most the largest lift.
            bound += max(float(self.genre_lift.max()), 0.0)
        if self.bpr is not None:
            bound += max(float(self.bpr.max()), 0.0)
        # ``genre_mean`` is float32: an item's mean of equal lifts can exceed them by a rounding step (3 x
        # float32(1/3) > 1), and an outside item would then tie with the answer's last one unnoticed.
        return bound * (1 + 1e-6) + 1e-12


@dataclass(frozen=True, slots=True)
class _Scores:
    """Scores over a universe of candidates; every array is aligned with ``universe`` (None: every item)."""

    universe: np.ndarray | None
    total: np.ndarray  # the exploitation score: the pessimistic log sample + personal lift
    explore: np.ndarray  # the plain log sample + personal lift (-inf: not an exploration candidate)
    components: tuple[np.ndarray | None, ...]  # personal lifts aligned with SOURCES[1:] (None: off)
    anchor: np.ndarray | None  # per candidate: the liked item whose neighbour it is (-1: none)
    twin_liked: np.ndarray | None = None  # per candidate: the twins' liked mass (None: no twins)

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """Catalog indices of positions in the universe."""
        return positions if self.universe is None else self.universe[positions]

    def labels(self, positions: np.ndarray, catalog: CatalogView) -> list[str]:
        """Why each item is recommended: the component that lifted it most (if by > 0.05), else "bandit"."""
        present = [(name, c[positions]) for name, c in zip(SOURCES[1:], self.components, strict=True) if c is not None]
        if self.twin_liked is not None:
            present.append(("twins", self.twin_liked[positions]))
        if not present or positions.size == 0:
            return ["bandit"] * int(positions.size)
        # Row 0 is the threshold; argmax keeps the first of equal rows, so a source must beat it strictly.
        lifts = np.vstack([np.full(positions.size, 0.05)] + [values for _, values in present])
        names = ["bandit"] + [name for name, _ in present]
        result = []
        for position, winner in zip(positions.tolist(), np.argmax(lifts, axis=0).tolist(), strict=True):
            name = names[winner]
            if name == "neighbour" and self.anchor is not None and self.anchor[position] >= 0:
                name = f"neighbour:{catalog.item_ids[self.anchor[position]]}"
            result.append(name)
        return result


class _NotExact(Exception):
    """An item outside the candidate universe could have ranked: rank over every item instead."""


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
        draw = self._bandit(ctx)
        personal = self._personal(ctx)
        k = min(ctx.k, n)
        n_explore = self._explore_count(ctx, k)
        if draw.exploit_cut > -np.inf or draw.explore_cut > -np.inf:
            # Rank the draw's head and the user's neighbours first; exact unless a bound says otherwise.
            extra = None
            if personal.neighbour is not None:
                extra = personal.neighbour > 0
            if self._twins(ctx) is not None:
                twin_items = ctx.twins.liked > 0  # type: ignore[union-attr]
                extra = twin_items if extra is None else extra | twin_items
            universe = draw.head_indices if extra is None else np.flatnonzero(draw.head | extra)
            scores = self._scores(ctx, draw, personal, universe)
            bound = personal.upper_bound_outside()
            try:
                return self._select(ctx, scores, n, k, n_explore, draw.exploit_cut + bound, draw.explore_cut + bound)
            except _NotExact:
                pass
        scores = self._scores(ctx, draw, personal, None)
        return self._select(ctx, scores, n, k, n_explore, -np.inf, -np.inf)

    def _select(
        self,
        ctx: RecommendationContext,
        scores: _Scores,
        n: int,
        k: int,
        n_explore: int,
        exploit_bound: float,
        explore_bound: float,
    ) -> list[Candidate]:
        """The answer from ``scores``; raises _NotExact when an item outside the universe could rank (its score
        could reach ``exploit_bound``/``explore_bound``, or the universe ran out of candidates)."""
        dense = scores.universe is None

        def best(values: np.ndarray, count: int, exclude: np.ndarray, bound: float) -> np.ndarray:
            chosen = top_k_indices(values, count, exclude)
            if not dense and count > 0 and (chosen.size < count or values[chosen[-1]] <= bound):
                raise _NotExact
            return chosen

        # Neither shown nor answered (an answer needs no impression: see UserProfile.excluded).
        excluded = ctx.profile.excluded()
        if not dense:
            excluded = excluded[scores.universe]
        explore = best(scores.explore, n_explore, excluded, explore_bound) if n_explore else np.empty(0, dtype=np.int64)
        exclude = excluded.copy()
        exclude[explore] = True
        head_count = k - explore.size
        if self._plain_head(head_count):
            # One selection gives the head and the spares behind it, in order.
            ranked = best(scores.total, n - explore.size, exclude, exploit_bound)
            head, spares = ranked[:head_count], ranked[head_count:]
        else:
            pool = best(scores.total, head_count * MMR_POOL_FACTOR, exclude, exploit_bound) if head_count > 0 else None
            head = self._diverse_head(ctx, scores, pool, head_count)
            exclude[head] = True
            spares = best(scores.total, n - head.size - explore.size, exclude, exploit_bound)
        labels = scores.labels(np.concatenate([head, spares]), ctx.catalog)
        head, explore, spares = scores.indices(head), scores.indices(explore), scores.indices(spares)
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
            # Groups 0-4 for 1, 2, 3, 4 and 5+ genres; an item without genres joins the one-genre group.
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
        explore = np.where(posterior.explorable, raw, -np.inf)
        exploit_head, exploit_cut = _best_and_cut(exploit, HEAD_SIZE)
        explore_head, explore_cut = _best_and_cut(explore, HEAD_SIZE)
        head = np.zeros(exploit.size, dtype=bool)
        head[exploit_head] = True
        head[explore_head] = True
        return _BanditDraw(exploit, explore, head, np.flatnonzero(head), exploit_cut, explore_cut)

    def _bandit(self, ctx: RecommendationContext) -> _BanditDraw:
        # The posterior depends only on the snapshot: computed once, shared by its draws.
        posterior = self._per_snapshot(ctx, (self, "posterior"), lambda: self._posterior(ctx.stats, ctx.catalog))
        if ctx.draws is None:
            return self._draw_bandit(posterior, ctx.rng)
        return ctx.draws.draw(self, self.params.posterior_draws, ctx.rng, lambda: self._draw_bandit(posterior, ctx.rng))

    def _personal(self, ctx: RecommendationContext) -> _Personal:
        p = self.params
        genre_lift_ = neighbour = bpr = anchor = None
        profile = ctx.profile
        # After a run of dislikes: neighbours and BPR off, the taste on with three times the dislike weight.
        after_dislike_streak = p.dislike_streak > 0 and profile.dislike_streak() >= p.dislike_streak
        has_genres = ctx.catalog.genre_matrix.shape[1] > 0
        if p.taste_weight and has_genres and (profile.liked.size or profile.disliked.size):
            dislike_weight = p.taste_dislike_weight * (3.0 if after_dislike_streak else 1.0)
            population = self._per_snapshot(
                ctx, "population genres", lambda: population_genre_share(ctx.catalog, ctx.stats.likes)
            )
            genre_lift_ = p.taste_weight * genre_lift(
                ctx.catalog, profile.liked, profile.disliked, population, p.taste_smoothing, dislike_weight
            )
        if not after_dislike_streak:
            if (p.neighbour_weight and profile.liked.size) or (p.dislike_neighbour_weight and profile.disliked.size):
                neighbour, anchor = self._neighbour_component(ctx)
            if p.bpr_weight and ctx.model is not None and ctx.user_vector is not None:
                bpr = self._bpr_component(ctx)
        return _Personal(genre_lift_, neighbour, anchor, bpr)

    def _scores(
        self, ctx: RecommendationContext, draw: _BanditDraw, personal: _Personal, universe: np.ndarray | None
    ) -> _Scores:
        def over_universe(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else _over(values, universe)

        taste = None
        if personal.genre_lift is not None:
            taste = _over(ctx.catalog.genre_mean, universe) @ personal.genre_lift
        components = (taste, over_universe(personal.neighbour), over_universe(personal.bpr))
        exploit, explore = _over(draw.exploit, universe), _over(draw.explore, universe)
        anchor = over_universe(personal.anchor)
        lifts = [c for c in components if c is not None]
        if lifts:
            lift = lifts[0] if len(lifts) == 1 else np.sum(lifts, axis=0)
            exploit, explore = exploit + lift, explore + lift
        twins = self._twins(ctx)
        liked = None
        if twins is not None:
            # P(like) = the twins' liked mass + the rest of the probability on the blend's own estimate.
            w = self.params.twin_weight
            liked, shown = w * _over(twins.liked, universe), np.clip(w * _over(twins.shown, universe), 0.0, 1.0)
            with np.errstate(divide="ignore"):
                exploit = np.log(liked + (1.0 - shown) * np.exp(exploit))
                # Exploration is for arms nobody knows: what twins liked belongs in the head, and what they were
                # shown without liking it is not worth this user's slot.
                explore = explore + np.log1p(-np.minimum(shown, 1.0 - 1e-6))
        return _Scores(universe, exploit, explore, components, anchor, liked)

    def _twins(self, ctx: RecommendationContext) -> DenseTwinLift | None:
        return ctx.twins if self.params.twin_weight > 0 else None

    @staticmethod
    def _per_snapshot(ctx: RecommendationContext, name: Hashable, make: Callable[[], T]) -> T:
        """``make()`` once per bandit snapshot when requests share one (``ctx.draws``), else per request."""
        return make() if ctx.draws is None else ctx.draws.once(name, make)

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
        scores = ctx.model_scores()
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
        chance = ctx.rng.random()  # drawn whatever k is, so the stream of draws does not depend on k
        if k <= 1:
            # One slot cannot hold a whole slot of budget without the answer being all exploration: it explores
            # with the budget's share of a list of the length it was tuned for, so a client asking for one item
            # at a time is explored at the same rate per slot as one asking for the default list (capped as that
            # list is, at all slots but one: a budget of 10 or more still leaves 1 in 10 answers to exploitation).
            share = min(budget, EXPLORE_BUDGET_LIST_LENGTH - 1) / EXPLORE_BUDGET_LIST_LENGTH
            return int(k == 1 and chance < share)
        whole = int(budget)
        # The exploitation head keeps at least one slot: a budget of k or more is capped at k - 1, smaller ones are
        # spent unchanged (so the default list of 10 explores exactly as before).
        return min(whole + int(chance < budget - whole), k - 1)

    def _plain_head(self, count: int) -> bool:
        return self.params.diversity_weight <= 0 and self.params.genre_cap >= count

    def _diverse_head(
        self, ctx: RecommendationContext, scores: _Scores, pool: np.ndarray | None, count: int
    ) -> np.ndarray:
        """An MMR re-rank of the ``pool`` (the ``count * MMR_POOL_FACTOR`` best positions), with the genre cap."""
        if count <= 0 or pool is None or pool.size == 0:
            return np.empty(0, dtype=np.int64)
        p = self.params
        values = scores.total[pool]
        spread = values.max() - values.min()
        relevance = (values - values.min()) / spread if spread > 0 else np.ones(pool.size)
        genres = _over(ctx.catalog.genre_matrix, scores.universe)
        return mmr_rerank(pool, relevance, genres, count, p.diversity_weight, p.genre_cap)
