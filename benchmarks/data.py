"""Benchmark data: the MovieLens catalog, MovieLens ratings as events, synthetic popularity-skewed histories,
and writing a history straight into a stack's event stream (what the pipeline rebuilds its memory from)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import numpy as np
import redis

from pipeline.state import DISLIKE, LIKE, TrainingColumns
from recsys_core import movielens
from recsys_core.settings import Settings

LIKE_RATING = 4.0
STREAM_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class CatalogItem:
    item_id: str
    genres: tuple[str, ...]
    title: str


def movielens_catalog() -> list[CatalogItem]:
    """Every movie of ml-latest-small as ``ml-<movieId>``."""
    path = movielens.locate(Settings())
    return [CatalogItem(f"ml-{m.movie_id}", m.genres, m.title) for m in movielens.load_movies(path)]


def synthetic_catalog(n_items: int) -> list[CatalogItem]:
    return [CatalogItem(f"s-i{i}", (), f"synthetic {i}") for i in range(n_items)]


def add_items(recs_url: str, items: Sequence[CatalogItem], batch: int = 2_000) -> int:
    """Load a catalog through the service's own ``POST /add_items``; returns the catalog size."""
    size = 0
    with httpx.Client(base_url=recs_url, timeout=120) as client:
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            response = client.post(
                "/add_items",
                json={
                    "item_ids": [i.item_id for i in chunk],
                    "genres": [list(i.genres) for i in chunk],
                    "titles": [i.title for i in chunk],
                },
            )
            response.raise_for_status()
            size = int(response.json().get("catalog_size", size))
    return size


def movielens_columns() -> TrainingColumns:
    """ml-latest-small ratings as one event each, in time order: rating >= 4 a like, anything lower a dislike."""
    ratings = movielens.load_ratings(movielens.locate(Settings()))
    order = np.argsort(ratings.timestamps, kind="stable")
    user_values, users = np.unique(ratings.user_ids[order], return_inverse=True)
    item_values, items = np.unique(ratings.movie_ids[order], return_inverse=True)
    return TrainingColumns(
        users=users.astype(np.int32),
        items=items.astype(np.int32),
        actions=np.where(ratings.ratings[order] >= LIKE_RATING, LIKE, DISLIKE).astype(np.int8),
        timestamps=ratings.timestamps[order].astype(np.float64),
        user_ids=[f"ml-u{u}" for u in user_values.tolist()],
        item_ids=[f"ml-{m}" for m in item_values.tolist()],
    )


def synthetic_columns(n_events: int, n_users: int, n_items: int, seed: int = 7) -> TrainingColumns:
    """Popularity-skewed interactions: item i drawn with weight 1/(i+50) (the top 1% of items get ~40% of the
    events), users with log-normal activity; 80% likes; timestamps over 30 days, in order."""
    rng = np.random.default_rng(seed)
    item_weights = 1.0 / (np.arange(n_items, dtype=np.float64) + 50.0)
    user_weights = rng.lognormal(mean=0.0, sigma=1.0, size=n_users)
    items = rng.choice(n_items, size=n_events, p=item_weights / item_weights.sum()).astype(np.int32)
    users = rng.choice(n_users, size=n_events, p=user_weights / user_weights.sum()).astype(np.int32)
    actions = np.where(rng.random(n_events) < 0.8, LIKE, DISLIKE).astype(np.int8)
    timestamps = np.sort(rng.uniform(1.7e9, 1.7e9 + 30 * 86400, size=n_events))
    return TrainingColumns(
        users=users,
        items=items,
        actions=actions,
        timestamps=timestamps,
        user_ids=[f"s-u{u}" for u in range(n_users)],
        item_ids=[f"s-i{i}" for i in range(n_items)],
    )


def inject_stream(client: redis.Redis, prefix: str, columns: TrainingColumns, generation: int = 0) -> int:
    """XADD every interaction to ``{prefix}:g{generation}:events`` with the fields the pipeline's
    ``EventStore.load_run`` reads (and the ones ``STORE_EVENTS`` writes). Returns the entries written."""
    stream = f"{prefix}:g{generation}:events"
    actions = {LIKE: "like", DISLIKE: "dislike"}
    n = int(columns.users.size)
    for start in range(0, n, STREAM_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + STREAM_BATCH)):
            pipe.xadd(
                stream,
                {
                    "msg": f"seed-{i}",
                    "user": columns.user_ids[columns.users[i]],
                    "item": columns.item_ids[columns.items[i]],
                    "action": actions[int(columns.actions[i])],
                    "ts": repr(float(columns.timestamps[i])),
                    "group": "seed",
                },
            )
        pipe.execute()
    return n
