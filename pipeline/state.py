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
    users: array[int] = field(default_factory=lambda: array("i"))
    items: array[int] = field(default_factory=lambda: array("i"))
    actions: array[int] = field(default_factory=lambda: array("b"))
    timestamps: array[float] = field(default_factory=lambda: array("d"))

    def append(self, user_id: str, item_id: str, action: str, timestamp: float) -> None:
        self.users.append(self.user_codes.setdefault(user_id, len(self.user_codes)))
        self.items.append(self.item_codes.setdefault(item_id, len(self.item_codes)))
        self.actions.append(LIKE if action == "like" else DISLIKE)
        self.timestamps.append(timestamp)

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def latest_of(cls, columns: TrainingColumns, count: int) -> InteractionLog:
        """A log of the latest ``count`` events of ``columns``, interning only the ids those events use (runs in a
        worker thread: ``columns`` is a copy)."""
        drop = max(len(columns.users) - count, 0)
        user_codes, users = _reintern(columns.user_ids, columns.users[drop:])
        item_codes, items = _reintern(columns.item_ids, columns.items[drop:])
        log = cls(user_codes, item_codes)
        log.users.frombytes(users.tobytes())
        log.items.frombytes(items.tobytes())
        log.actions.frombytes(columns.actions[drop:].tobytes())
        log.timestamps.frombytes(columns.timestamps[drop:].tobytes())
        return log

    def extend_from(self, other: InteractionLog, start: int) -> None:
        """Append ``other``'s events from position ``start`` on (those that arrived after a snapshot of it)."""
        if start >= len(other):
            return
        user_ids, item_ids = list(other.user_codes), list(other.item_codes)
        for i in range(start, len(other)):
            action = "like" if other.actions[i] == LIKE else "dislike"
            self.append(user_ids[other.users[i]], item_ids[other.items[i]], action, other.timestamps[i])

    def user_column(self) -> tuple[np.ndarray, list[str]]:
        """A copy of the user codes in event order, and the ids they code (on the loop: appends must not run
        while the column is exported)."""
        return np.frombuffer(self.users, dtype=np.int32).copy(), list(self.user_codes)

    def reverse(self) -> None:
        """Reverse the event order in place (a log read newest first becomes oldest first)."""
        for column in (self.users, self.items, self.actions, self.timestamps):
            column.reverse()

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


def users_newest_first(codes: np.ndarray, ids: list[str], limit: int) -> list[str]:
    """The ids of the ``limit`` users who acted most recently in ``codes`` (event order), the most recent first."""
    unique, last_seen = np.unique(codes[::-1], return_index=True)
    newest = unique[np.argsort(last_seen, kind="stable")][:limit]
    return [ids[code] for code in newest.tolist()]


def _reintern(ids: list[str], column: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """New codes 0..n-1 for the ids (by old code) the column still uses, in their old order, and the column
    re-coded."""
    used = np.flatnonzero(np.bincount(column, minlength=len(ids)))
    remap = np.zeros(len(ids), dtype=np.int32)
    remap[used] = np.arange(used.size, dtype=np.int32)
    return {ids[code]: new for new, code in enumerate(used.tolist())}, remap[column]


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
    # The log keeps the latest ``max_events`` events (0: all); the counters count every event of the run.
    max_events: int = 0
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

    def log_over_window(self) -> bool:
        """True when the log holds a tenth more than ``max_events``: time to keep only the latest (in steps, so
        the copy is rare)."""
        return bool(self.max_events) and len(self.log) > self.max_events + max(self.max_events // 10, 1)

    @property
    def events_since_train(self) -> int:
        return self.applied_events - self.events_at_last_train
