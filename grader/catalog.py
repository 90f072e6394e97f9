"""The catalog the grader loads: every MovieLens movie under an opaque UUID.

Ids are deterministic in (seed, movieId), so two runs with the same seed load the same catalog, yet a service
cannot recognise MovieLens ids (and so cannot cheat with a model trained offline on the raw dataset).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from recsys_core.movielens import Movie

# Fixed namespace: item ids depend only on (seed, movieId).
ITEM_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "hardml-recsys/grader/items")


def item_id_for(seed: int, movie_id: int) -> str:
    return str(uuid.uuid5(ITEM_ID_NAMESPACE, f"{seed}:{movie_id}"))


@dataclass(frozen=True, slots=True)
class CatalogItem:
    item_id: str
    movie_id: int
    title: str
    genres: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """Items in load order; lookups by item id and by MovieLens movie id."""

    items: tuple[CatalogItem, ...]
    by_item_id: dict[str, CatalogItem] = field(init=False, repr=False)
    item_id_by_movie: dict[int, str] = field(init=False, repr=False)
    genre_sets: dict[str, frozenset[str]] = field(init=False, repr=False)
    # Load order of each item id: the tie-breaker the reference recommenders use.
    positions: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_item_id", {item.item_id: item for item in self.items})
        object.__setattr__(self, "positions", {item.item_id: i for i, item in enumerate(self.items)})
        object.__setattr__(self, "genre_sets", {item.item_id: frozenset(item.genres) for item in self.items})
        object.__setattr__(self, "item_id_by_movie", {item.movie_id: item.item_id for item in self.items})
        if len(self.by_item_id) != len(self.items):
            raise ValueError("catalog item ids are not unique")

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.by_item_id

    def genres_of(self, item_id: str) -> frozenset[str]:
        """Genres of an item; an unknown id has none."""
        return self.genre_sets.get(item_id, frozenset())

    def batches(self, size: int) -> Iterator[dict[str, list[Any]]]:
        """``/add_items`` bodies of at most ``size`` items each."""
        for start in range(0, len(self.items), size):
            chunk = self.items[start : start + size]
            yield {
                "item_ids": [item.item_id for item in chunk],
                "genres": [list(item.genres) for item in chunk],
                "titles": [item.title for item in chunk],
            }


def build_catalog(movies: Sequence[Movie], seed: int) -> Catalog:
    """The catalog in a seeded random order: movies.csv is sorted by movieId, which correlates with popularity
    (the oldest, most rated films come first), and a service must not be able to profit from the load order."""
    order = list(movies)
    random.Random(f"grader-catalog:{seed}").shuffle(order)
    return Catalog(
        tuple(
            CatalogItem(item_id_for(seed, movie.movie_id), movie.movie_id, movie.title, tuple(movie.genres))
            for movie in order
        )
    )
