"""Answers while Redis is unreachable: the last known popular items, minus what this replica remembers.

The memory is bounded (an LRU over users) and compact (catalog indices of one generation, as int32): it
holds each user's shown set as this replica last read it plus what it served since, and the items of claims
in flight. Items served in fallback mode are written back to the users' shown sets once Redis answers again,
so later answers stay unrepeated.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
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
    """What this replica showed each user, and the fallback answers Redis has not been told of yet.

    Pending writes are kept per user (merged), and a user counts as pending from the fallback answer until
    Redis confirmed the write-back: only those users must keep answering from the fallback, everyone else
    can take the normal path while a write-back is in flight.
    """

    def __init__(self, max_users: int = 20_000, max_pending: int = 100_000) -> None:
        self._generation = -1
        self._shown: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pending: dict[str, PendingWrite] = {}
        self._flushing: dict[str, PendingWrite] = {}
        # Per user, the candidates of each claim in flight (a few requests at most, gone when they finish).
        self._offers: dict[str, list[list[np.ndarray]]] = {}
        self._max_users = max_users
        self._max_pending = max_pending
        self.dropped_writes = 0

    def remember(self, generation: int, user_id: str, indices: np.ndarray) -> None:
        """Add catalog indices (of ``generation``'s catalog) to what the user is known to have been shown."""
        if generation != self._generation:
            self._shown.clear()
            self._generation = generation
        known = self._shown.pop(user_id, None)
        merged = indices if known is None else np.union1d(known, indices)
        self._shown[user_id] = merged.astype(np.int32, copy=False)
        while len(self._shown) > self._max_users:
            self._shown.popitem(last=False)

    def shown(self, generation: int, user_id: str) -> np.ndarray:
        if generation != self._generation:
            return np.empty(0, dtype=np.int32)
        return self._shown.get(user_id, np.empty(0, dtype=np.int32))

    def shown_or_offered(self, generation: int, user_id: str) -> np.ndarray:
        """What the user was shown, plus what claims in flight for them may take: a fallback answer skips both."""
        shown = self.shown(generation, user_id)
        offers = [indices for offer in self._offers.get(user_id, []) for indices in offer]
        return shown if not offers else np.concatenate([shown, *offers])

    @contextmanager
    def offering(self, user_id: str) -> Iterator[list[np.ndarray]]:
        """A request's offers to the user while it claims: the caller appends each round's candidate indices; they
        count as possibly shown until the block ends."""
        offer: list[np.ndarray] = []
        self._offers.setdefault(user_id, []).append(offer)
        try:
            yield offer
        finally:
            remaining = [other for other in self._offers.get(user_id, []) if other is not offer]
            if remaining:
                self._offers[user_id] = remaining
            else:
                self._offers.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._shown)

    def forget_all(self) -> None:
        self._shown.clear()
        self._pending.clear()
        self._flushing.clear()

    def add_pending(self, write: PendingWrite) -> None:
        known = self._pending.pop(write.user_id, None)
        if known is not None and known.generation == write.generation:
            # Each item once: the write-back's size stays bounded by the catalog, not by the answers served.
            write = PendingWrite(write.generation, write.user_id, tuple(dict.fromkeys(known.item_ids + write.item_ids)))
        elif known is not None and known.generation > write.generation:
            write = known  # a newer run's answers win over an older run's (those keys are gone anyway)
        if known is None and len(self._pending) >= self._max_pending:
            # Bounded like the memory itself; the user may be shown these items again once Redis is back.
            self.dropped_writes += 1
            return
        self._pending[write.user_id] = write

    def has_pending(self) -> bool:
        """True while some fallback answer has not been written back to Redis yet."""
        return bool(self._pending) or bool(self._flushing)

    def is_pending(self, user_id: str) -> bool:
        """True while a fallback answer to this user is not in Redis yet (queued, or being written)."""
        return user_id in self._pending or user_id in self._flushing

    def take_pending(self) -> list[PendingWrite]:
        """The queued writes, now in flight: they still count as pending until ``flushed`` or returned."""
        taken, self._pending = self._pending, {}
        self._flushing.update(taken)
        return list(taken.values())

    def flushed(self) -> None:
        """The writes in flight reached Redis (or were dropped as another run's)."""
        self._flushing.clear()

    def return_pending(self) -> None:
        """The writes in flight failed: queue them again, merged with what was answered meanwhile."""
        flushing, self._flushing = self._flushing, {}
        for write in flushing.values():
            self.add_pending(write)


def popular_unseen(state: ServingState, exclude: np.ndarray, k: int) -> np.ndarray:
    """Catalog indices of the k items with the most likes per impression (smoothed), skipping ``exclude``."""
    n_items = len(state.catalog)
    if n_items == 0:
        return np.empty(0, dtype=np.int64)
    stats = state.stats
    popularity = (stats.likes + 1.0) / (stats.impressions + 20.0)
    mask = np.zeros(n_items, dtype=bool)
    mask[exclude[exclude < n_items]] = True
    return top_k_indices(popularity, k, mask)
