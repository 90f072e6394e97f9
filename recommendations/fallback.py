"""Answers while Redis is unreachable: the last known popular items, minus what this replica remembers.

The memory is bounded (an LRU over users) and only covers what this replica served; items served in fallback
mode are written back to the users' shown sets once Redis answers again, so later answers stay unrepeated.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from recommendations.serving_state import ServingState
from recsys_core.algorithms.topk import top_k_indices


@dataclass(frozen=True, slots=True)
class PendingWrite:
    generation: int
    user_id: str
    item_ids: tuple[str, ...]


class ReplicaMemory:
    def __init__(self, max_users: int = 50_000, max_pending: int = 100_000) -> None:
        self._shown: OrderedDict[str, set[str]] = OrderedDict()
        self._pending: list[PendingWrite] = []
        self._max_users = max_users
        self._max_pending = max_pending

    def remember(self, user_id: str, item_ids: list[str] | set[str]) -> None:
        known = self._shown.pop(user_id, set())
        known.update(item_ids)
        self._shown[user_id] = known
        while len(self._shown) > self._max_users:
            self._shown.popitem(last=False)

    def shown(self, user_id: str) -> set[str]:
        return self._shown.get(user_id, set())

    def forget_all(self) -> None:
        self._shown.clear()
        self._pending.clear()

    def add_pending(self, write: PendingWrite) -> None:
        if len(self._pending) < self._max_pending:
            self._pending.append(write)

    def has_pending(self) -> bool:
        """True while some fallback answer has not been written back to Redis yet."""
        return bool(self._pending)

    def take_pending(self) -> list[PendingWrite]:
        pending, self._pending = self._pending, []
        return pending

    def return_pending(self, writes: list[PendingWrite]) -> None:
        self._pending = writes + self._pending


def popular_unseen(state: ServingState, exclude: set[str], k: int) -> list[str]:
    """The k items with the most likes per impression (smoothed) that are not in ``exclude``."""
    catalog = state.catalog
    if len(catalog) == 0:
        return []
    stats = state.stats
    popularity = (stats.likes + 1.0) / (stats.impressions + 20.0)
    mask = np.zeros(len(catalog), dtype=bool)
    mask[catalog.indices_of(exclude)] = True
    return [catalog.item_ids[i] for i in top_k_indices(popularity, k, mask)]
