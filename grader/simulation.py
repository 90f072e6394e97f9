"""Simulated users: MovieLens raters replayed as anonymous visitors of the service under test.

A simulated user is a MovieLens user drawn with replacement; two draws of the same rater are two different
visitors (fresh UUIDs) with the same taste. Taste is binary: a movie the rater scored at least
``LIKE_THRESHOLD`` is relevant (the visitor likes it when shown), one scored at most ``DISLIKE_THRESHOLD``
is disliked; everything in between, and everything unrated, is ignored when shown.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from grader.catalog import Catalog
from recsys_core.movielens import Movie, Ratings

# MovieLens ratings go 0.5..5 in half stars: 4 and up is a clear "liked it", 2 and below a clear "did not".
LIKE_THRESHOLD = 4.0
DISLIKE_THRESHOLD = 2.0


@dataclass(frozen=True, slots=True)
class Dataset:
    movies: Sequence[Movie]
    ratings: Ratings


@dataclass(frozen=True, slots=True)
class SimulatedUser:
    # Position in the seeded arrival order: users start in this order, the "over time" plots use it.
    arrival: int
    user_id: str
    source_user: int
    relevant: frozenset[str]
    disliked: frozenset[str]


@dataclass(frozen=True, slots=True)
class Reaction:
    """One ``/interact`` body's worth of feedback on a shown list."""

    item_ids: tuple[str, ...]
    actions: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.item_ids)


def tastes(ratings: Ratings, catalog: Catalog) -> dict[int, tuple[frozenset[str], frozenset[str]]]:
    """(relevant, disliked) catalog item ids per MovieLens user; ratings of unknown movies are dropped."""
    liked: defaultdict[int, set[str]] = defaultdict(set)
    disliked: defaultdict[int, set[str]] = defaultdict(set)
    for user, movie, rating in zip(
        ratings.user_ids.tolist(), ratings.movie_ids.tolist(), ratings.ratings.tolist(), strict=True
    ):
        item_id = catalog.item_id_by_movie.get(movie)
        if item_id is None:
            continue
        if rating >= LIKE_THRESHOLD:
            liked[user].add(item_id)
        elif rating <= DISLIKE_THRESHOLD:
            disliked[user].add(item_id)
    raters = sorted(set(ratings.user_ids.tolist()))
    return {user: (frozenset(liked[user]), frozenset(disliked[user])) for user in raters}


def sample_users(
    ratings: Ratings, catalog: Catalog, count: int, seed: int, distinct: bool = False
) -> list[SimulatedUser]:
    """``count`` visitors drawn with replacement from the MovieLens raters, in their (seeded) arrival order.

    ``distinct``: without replacement, so no visitor repeats an earlier one's answers (at most one visitor per
    rater: 610 in ml-latest-small)."""
    taste_by_rater = tastes(ratings, catalog)
    if not taste_by_rater:
        raise ValueError("the ratings hold no users")
    if distinct and count > len(taste_by_rater):
        raise ValueError(f"{count} distinct visitors asked, but the ratings hold only {len(taste_by_rater)} raters")
    rng = random.Random(f"grader-users:{seed}")
    everyone = sorted(taste_by_rater)
    raters = rng.sample(everyone, k=count) if distinct else rng.choices(everyone, k=count)
    users = []
    for arrival, rater in enumerate(raters):
        relevant, disliked = taste_by_rater[rater]
        user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        users.append(SimulatedUser(arrival, user_id, rater, relevant, disliked))
    return users


def react(user: SimulatedUser, shown: Sequence[str]) -> Reaction:
    """Like every shown relevant item, dislike every shown disliked one, once each, in list order."""
    item_ids: list[str] = []
    actions: list[str] = []
    for item_id in dict.fromkeys(shown):
        if item_id in user.relevant:
            item_ids.append(item_id)
            actions.append("like")
        elif item_id in user.disliked:
            item_ids.append(item_id)
            actions.append("dislike")
    return Reaction(tuple(item_ids), tuple(actions))
