"""One recommendation strategy = one small class behind ``Strategy.recommend``.

A strategy is pure: it reads an immutable ``RecommendationContext`` (catalog, bandit evidence, model, the
user's profile) and returns ranked candidates. It never sees Redis; the service claims the final slots.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import numpy as np

from recsys_core.algorithms.bandit import ItemStats
from recsys_core.algorithms.factors import FactorModel
from recsys_core.algorithms.topk import top_k_indices
from recsys_core.algorithms.twins import DenseTwinLift
from recsys_core.catalog import CatalogView


@dataclass(frozen=True, slots=True)
class ItemNeighbours:
    """Each item's top neighbours (rows aligned with the catalog index; newer items have no row)."""

    indices: np.ndarray  # (n, m) int32
    similarities: np.ndarray  # (n, m) float32

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, indices=self.indices, similarities=self.similarities)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ItemNeighbours:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            return cls(arrays["indices"], arrays["similarities"])


T = TypeVar("T")


class DrawCache:
    """Posterior draws over every arm, kept for one bandit snapshot and shared by the requests that rank on it.

    A draw over ~10^4 arms is most of a request's ranking cost. A strategy draws afresh for the first
    ``capacity`` requests of a snapshot, then each request takes one of those draws at random: every request
    still ranks on an exact posterior sample, and concurrent users still get different lists, while a
    replica's cost per snapshot is bounded. Owned by one snapshot of a replica's serving state (replaced with
    the evidence), never shared between snapshots.
    """

    def __init__(self) -> None:
        self._draws: dict[Hashable, list[object]] = {}
        self._once: dict[Hashable, object] = {}

    def once(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()`` computed once per snapshot (e.g. the posterior parameters every draw starts from)."""
        if key not in self._once:
            self._once[key] = make()
        return self._once[key]  # type: ignore[return-value]

    def draw(self, key: Hashable, capacity: int, rng: np.random.Generator, make: Callable[[], T]) -> T:
        draws = self._draws.setdefault(key, [])
        if len(draws) < capacity:
            value = make()
            draws.append(value)
            return value
        if not draws:  # capacity 0: always fresh
            return make()
        return draws[int(rng.integers(len(draws)))]  # type: ignore[return-value]

    def __len__(self) -> int:
        return sum(len(draws) for draws in self._draws.values())


@dataclass(frozen=True, slots=True)
class UserProfile:
    """What we know of one user, in catalog indices."""

    shown: np.ndarray  # bool mask over the catalog: never recommend these again (nor answered ones: ``excluded``)
    liked: np.ndarray  # int indices, oldest first
    disliked: np.ndarray  # int indices, oldest first
    # The user's answers in order (+1 like, -1 dislike), oldest first, for session awareness.
    recent_actions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))

    @classmethod
    def empty(cls, n_items: int) -> UserProfile:
        none = np.empty(0, dtype=np.int64)
        return cls(np.zeros(n_items, dtype=bool), none, none.copy())

    def dislike_streak(self) -> int:
        """How many of the latest answers in a row were dislikes."""
        streak = 0
        for action in self.recent_actions[::-1].tolist():
            if action >= 0:
                break
            streak += 1
        return streak

    def excluded(self) -> np.ndarray:
        """Bool mask over the catalog of what no strategy may recommend: the items shown and the items answered.

        /interact takes an answer on any catalog item, not only on one /recs returned, so the shown set can miss
        an item the user already liked or disliked; recommending it again would ask the same question twice.
        """
        mask = self.shown.copy()
        mask[self.liked] = True
        mask[self.disliked] = True
        return mask

    @property
    def n_feedback(self) -> int:
        return int(self.liked.size + self.disliked.size)


@dataclass(frozen=True, slots=True)
class RecommendationContext:
    user_id: str
    catalog: CatalogView
    stats: ItemStats  # padded to the catalog size
    model: FactorModel | None
    profile: UserProfile
    rng: np.random.Generator
    # How many items the answer holds; strategies may rank more (spares for the atomic claim).
    k: int = 10
    # Fresh item-to-item neighbours from co-likes (published by the pipeline), if any.
    co_likes: ItemNeighbours | None = None
    # Posterior draws shared with other requests on the same bandit snapshot (None: every request draws).
    draws: DrawCache | None = None
    # The user's factors in ``model`` (None: the model does not know the user, or there is no model).
    user_vector: np.ndarray | None = None
    # What earlier users who answered like this one liked and were shown (None: no match, or not computed).
    twins: DenseTwinLift | None = None

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def model_scores(self) -> np.ndarray | None:
        """The model's scores of this user over the catalog (-inf for items newer than the model), if it knows
        the user."""
        if self.model is None or self.user_vector is None:
            return None
        return self.model.scores_for(self.user_vector, self.n_items)


@dataclass(frozen=True, slots=True)
class Candidate:
    index: int
    source: str


class Strategy(ABC):
    """Rank up to ``n`` catalog items the user has neither been shown nor answered, best first."""

    name: ClassVar[str]

    @abstractmethod
    def recommend(self, ctx: RecommendationContext, n: int) -> list[Candidate]: ...

    def describe(self) -> dict[str, object]:
        """Every parameter of the strategy, flat (logged with each retrain so a run says what served)."""
        return {}


def candidates_from_scores(
    scores: np.ndarray, ctx: RecommendationContext, n: int, source: str, exclude: np.ndarray | None = None
) -> list[Candidate]:
    """The ``n`` best items of a score vector the user has neither seen nor answered (-inf: not a candidate)."""
    mask = ctx.profile.excluded()
    if exclude is not None:
        mask |= exclude
    return [Candidate(int(i), source) for i in top_k_indices(scores, n, mask)]


def merge_candidates(*lists: list[Candidate], n: int) -> list[Candidate]:
    """Concatenate ranked lists, keeping each item's first (best) appearance, up to ``n``."""
    seen: set[int] = set()
    merged: list[Candidate] = []
    if n <= 0:
        return merged
    for candidates in lists:
        for candidate in candidates:
            if candidate.index not in seen:
                seen.add(candidate.index)
                merged.append(candidate)
                if len(merged) >= n:
                    return merged
    return merged


def random_unseen(ctx: RecommendationContext, n: int, source: str = "fill") -> list[Candidate]:
    """Uniformly random items neither seen nor answered: the last resort that keeps every answer full."""
    unseen = np.flatnonzero(~ctx.profile.excluded())
    if unseen.size == 0:
        return []
    picked = ctx.rng.choice(unseen, size=min(n, unseen.size), replace=False)
    return [Candidate(int(i), source) for i in picked]


def rank_with_fill(strategy: Strategy, ctx: RecommendationContext, n: int) -> list[Candidate]:
    """The strategy's ranking, topped up with random unseen, unanswered items when it has fewer than ``n``.

    Every answer is then full whenever the catalog still has such items, whatever the strategy knows.
    """
    ranked = strategy.recommend(ctx, n)
    if len(ranked) >= n:
        return ranked[:n]
    return merge_candidates(ranked, random_unseen(ctx, n), n=n)
