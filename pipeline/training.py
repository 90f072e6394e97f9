"""One retrain as a pure function of a copy of the interaction log: runs in a worker thread.

Likes only are positives (implicit's BPR treats every non-zero as one); a user's latest answer per item wins,
so an item liked and then disliked is not a positive. The most recent ``holdout_fraction`` of likes is held
out to measure precision@10/NDCG@10 offline; the published model is then fitted on all likes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pipeline.state import LIKE, TrainingColumns
from recsys_core.algorithms.co_likes import co_like_neighbours
from recsys_core.algorithms.evaluation import OfflineMetrics, evaluate_at_k, recent_holdout_mask
from recsys_core.algorithms.factors import BPRParams, item_neighbours, train_bpr
from recsys_core.strategies.base import ItemNeighbours

N_NEIGHBOURS = 20


@dataclass(frozen=True, slots=True)
class TrainingOutput:
    user_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    neighbour_indices: np.ndarray
    neighbour_sims: np.ndarray
    offline: OfflineMetrics | None
    n_users: int
    n_items: int
    n_likes: int
    n_events: int
    train_seconds: float  # all of fit_model, the offline evaluation's own BPR fit included
    evaluation_seconds: float = 0.0  # of which the offline evaluation


@dataclass(frozen=True, slots=True)
class Likes:
    users: np.ndarray  # codes into user_ids
    items: np.ndarray  # catalog indices
    timestamps: np.ndarray
    user_ids: list[str]


def latest_likes(columns: TrainingColumns, catalog_index: dict[str, int]) -> Likes:
    """(user, item) pairs whose latest answer is a like, for items in the catalog."""
    n = columns.users.size
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return Likes(empty, empty, np.empty(0), columns.user_ids)
    item_to_catalog = np.array([catalog_index.get(item_id, -1) for item_id in columns.item_ids], dtype=np.int64)
    pair = columns.users.astype(np.int64) * max(len(columns.item_ids), 1) + columns.items
    # The last occurrence of each pair in log order is the user's latest answer for that item.
    _, first_in_reversed = np.unique(pair[::-1], return_index=True)
    latest = n - 1 - first_in_reversed
    keep = latest[(columns.actions[latest] == LIKE) & (item_to_catalog[columns.items[latest]] >= 0)]
    keep.sort()
    return Likes(
        users=columns.users[keep].astype(np.int64),
        items=item_to_catalog[columns.items[keep]],
        timestamps=columns.timestamps[keep],
        user_ids=columns.user_ids,
    )


def co_likes_from_log(columns: TrainingColumns, catalog_ids: list[str], n_neighbours: int) -> ItemNeighbours:
    """Co-like neighbours of the catalog items from every user's current likes."""
    likes = latest_likes(columns, {item_id: i for i, item_id in enumerate(catalog_ids)})
    return co_like_neighbours(likes.users, likes.items, len(catalog_ids), n_neighbours)


def _matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    data = np.ones(users.size, dtype=np.float32)
    matrix = sp.csr_matrix((data, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    matrix.data[:] = 1.0
    return matrix


def _items_by_user(users: np.ndarray, items: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    return {int(u[0]): i for u, i in zip(np.split(users, bounds), np.split(items, bounds), strict=True) if u.size}


def offline_evaluation(
    likes: Likes,
    n_users: int,
    n_items: int,
    params: BPRParams,
    fraction: float,
    should_stop: Callable[[], bool] | None = None,
) -> OfflineMetrics:
    heldout = recent_holdout_mask(likes.timestamps, fraction)
    if not heldout.any():
        return OfflineMetrics(0.0, 0.0, 0)
    train_users, train_items = likes.users[~heldout], likes.items[~heldout]
    user_factors, item_factors = train_bpr(_matrix(train_users, train_items, n_users, n_items), params, should_stop)
    train_by_user = _items_by_user(train_users, train_items)
    test_by_user = {
        u: items
        for u, items in _items_by_user(likes.users[heldout], likes.items[heldout]).items()
        if u in train_by_user  # a user with no training likes has no learned vector
    }
    return evaluate_at_k(user_factors, item_factors, train_by_user, test_by_user, k=10)


def fit_model(
    columns: TrainingColumns,
    catalog_ids: list[str],
    params: BPRParams,
    holdout_fraction: float,
    evaluate: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> TrainingOutput | None:
    """Train on every like; None when there is nothing to learn from yet. ``should_stop``: see ``train_bpr``
    (raises ``TrainingCancelled``)."""
    started = time.perf_counter()
    catalog_index = {item_id: i for i, item_id in enumerate(catalog_ids)}
    likes = latest_likes(columns, catalog_index)
    if likes.users.size == 0:
        return None
    # Compact the user axis to users with at least one like.
    liked_users, user_rows = np.unique(likes.users, return_inverse=True)
    likes = Likes(user_rows, likes.items, likes.timestamps, [likes.user_ids[u] for u in liked_users])
    n_users, n_items = liked_users.size, len(catalog_ids)
    evaluation_started = time.perf_counter()
    offline = offline_evaluation(likes, n_users, n_items, params, holdout_fraction, should_stop) if evaluate else None
    evaluation_seconds = time.perf_counter() - evaluation_started
    matrix = _matrix(likes.users, likes.items, n_users, n_items)
    user_factors, item_factors = train_bpr(matrix, params, should_stop)
    eligible = np.bincount(likes.items, minlength=n_items) >= params.neighbour_min_likes
    neighbour_indices, neighbour_sims = item_neighbours(
        item_factors, N_NEIGHBOURS, eligible=eligible, should_stop=should_stop
    )
    return TrainingOutput(
        user_ids=np.array(likes.user_ids, dtype=np.str_),
        user_factors=user_factors,
        item_factors=item_factors,
        neighbour_indices=neighbour_indices,
        neighbour_sims=neighbour_sims,
        offline=offline,
        n_users=int(n_users),
        n_items=int(n_items),
        n_likes=int(matrix.nnz),
        n_events=int(columns.users.size),
        train_seconds=time.perf_counter() - started,
        evaluation_seconds=evaluation_seconds,
    )
