"""The pipeline's in-memory view of one run, rebuilt from Redis on start and dropped on /cleanup.

Redis holds the truth (the event stream and the per-item counters, written atomically per event); this is a
compact copy for building bandit snapshots and training matrices without re-reading the stream.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

LIKE, DISLIKE = 1, -1


@dataclass(slots=True)
class InteractionLog:
    """Every stored interaction as compact columns; ids are interned to ints."""

    user_codes: dict[str, int] = field(default_factory=dict)
    item_codes: dict[str, int] = field(default_factory=dict)
    users: array = field(default_factory=lambda: array("i"))
    items: array = field(default_factory=lambda: array("i"))
    actions: array = field(default_factory=lambda: array("b"))
    timestamps: array = field(default_factory=lambda: array("d"))

    def append(self, user_id: str, item_id: str, action: str, timestamp: float) -> None:
        self.users.append(self.user_codes.setdefault(user_id, len(self.user_codes)))
        self.items.append(self.item_codes.setdefault(item_id, len(self.item_codes)))
        self.actions.append(LIKE if action == "like" else DISLIKE)
        self.timestamps.append(timestamp)

    def __len__(self) -> int:
        return len(self.users)

    def columns(self) -> TrainingColumns:
        """A copy of the columns that a training thread can own while consumption goes on."""
        return TrainingColumns(
            users=np.frombuffer(self.users, dtype=np.int32).copy(),
            items=np.frombuffer(self.items, dtype=np.int32).copy(),
            actions=np.frombuffer(self.actions, dtype=np.int8).copy(),
            timestamps=np.frombuffer(self.timestamps, dtype=np.float64).copy(),
            user_ids=list(self.user_codes),
            item_ids=list(self.item_codes),
        )


@dataclass(frozen=True, slots=True)
class TrainingColumns:
    users: np.ndarray
    items: np.ndarray  # codes into item_ids (not catalog indices)
    actions: np.ndarray
    timestamps: np.ndarray
    user_ids: list[str]
    item_ids: list[str]


@dataclass(slots=True)
class RunState:
    generation: int
    likes: Counter[str] = field(default_factory=Counter)
    dislikes: Counter[str] = field(default_factory=Counter)
    log: InteractionLog = field(default_factory=InteractionLog)
    # Bumped by every applied event: the snapshot publisher and the retrain schedule compare against it.
    applied_events: int = 0
    events_at_last_train: int = 0
    messages_stored: int = 0
    duplicates: int = 0
    stale_dropped: int = 0

    def apply(self, user_id: str, item_id: str, action: str, timestamp: float) -> None:
        (self.likes if action == "like" else self.dislikes)[item_id] += 1
        self.log.append(user_id, item_id, action, timestamp)
        self.applied_events += 1

    @property
    def events_since_train(self) -> int:
        return self.applied_events - self.events_at_last_train
