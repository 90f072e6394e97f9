"""BPR (the ``implicit`` library) as a pure function of a like matrix, and the published factor model.

implicit's BPR treats every stored non-zero as a positive, so the training matrix holds likes only; dislikes
stay out of the positives (they are used at serving time instead). Models travel as plain ``.npz`` arrays,
never pickles.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


@dataclass(frozen=True, slots=True)
class BPRParams:
    factors: int = 64
    iterations: int = 60
    learning_rate: float = 0.05
    regularization: float = 0.01
    threads: int = 1
    random_seed: int = 42
    # Item neighbours are taken among items with at least this many likes (0: every catalog item).
    neighbour_min_likes: int = 1


class TrainingCancelled(Exception):
    """A fit was told to stop between two iterations: its half-trained factors are not worth publishing."""


def train_bpr(
    likes: sp.csr_matrix, params: BPRParams, should_stop: Callable[[], bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(user_factors, item_factors) of a users x items like matrix; CPU only, threads capped so serving keeps
    its cores. ``should_stop`` is asked after every iteration (a 10M-event fit runs minutes; a stopping process
    must not wait for it): when it says yes the fit raises ``TrainingCancelled``."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking  # heavy import, only where training happens

    model = BayesianPersonalizedRanking(
        factors=params.factors,
        learning_rate=params.learning_rate,
        regularization=params.regularization,
        iterations=params.iterations,
        num_threads=params.threads,
        random_state=params.random_seed,
    )

    def stop_when_asked(iteration: int, *_: object) -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"stopped after {iteration + 1} of {params.iterations} BPR iterations")

    with threadpool_limits(limits=params.threads):
        # implicit calls the callback between iterations, and an exception raised there ends the fit.
        model.fit(likes, show_progress=False, callback=stop_when_asked)
    return np.asarray(model.user_factors, dtype=np.float32), np.asarray(model.item_factors, dtype=np.float32)


def item_neighbours(
    item_factors: np.ndarray,
    n_neighbours: int,
    batch: int = 2048,
    eligible: np.ndarray | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``n_neighbours`` most similar items by cosine of their factors (bias column left out).

    ``eligible`` (a boolean mask) restricts both sides to those items, e.g. items with at least one like: an
    item BPR never saw liked keeps near-random factors, so its cosines are noise. Rows of other items, and
    slots beyond the eligible count, hold similarity 0 and index ``n_items`` (out of range: "no neighbour").
    ``should_stop`` is asked before every block of ``batch`` rows, as ``train_bpr`` asks after every iteration.
    """
    n_items = item_factors.shape[0]
    n_neighbours = min(n_neighbours, max(n_items - 1, 0))
    if n_neighbours == 0:
        return np.zeros((n_items, 0), dtype=np.int32), np.zeros((n_items, 0), dtype=np.float32)
    members = np.arange(n_items) if eligible is None else np.flatnonzero(eligible)
    indices = np.full((n_items, n_neighbours), n_items, dtype=np.int32)
    sims = np.zeros((n_items, n_neighbours), dtype=np.float32)
    top = min(n_neighbours, members.size - 1)
    if top <= 0:
        return indices, sims
    vectors = item_factors[members, :-1].astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-9)
    for start in range(0, members.size, batch):
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"stopped while finding item neighbours ({start} of {members.size} items done)")
        block = unit[start : start + batch] @ unit.T
        rows = np.arange(block.shape[0])
        block[rows, rows + start] = -np.inf  # an item is not its own neighbour
        part = np.argpartition(-block, top - 1, axis=1)[:, :top]
        part_sims = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_sims, axis=1)
        targets = members[start : start + batch]
        indices[targets, :top] = members[np.take_along_axis(part, order, axis=1)]
        sims[targets, :top] = np.take_along_axis(part_sims, order, axis=1)
    return indices, sims


@dataclass(frozen=True, slots=True)
class FactorModel:
    """A published model: factors aligned with the catalog index at training time, plus the user map.

    The copy /recs replicas load has no users (``item_side``): their factors live in a Redis hash read per
    request, so a replica's memory does not grow with the number of users. Training, MLflow and the offline
    replay keep both sides.
    """

    version: int
    user_ids: np.ndarray
    user_factors: np.ndarray
    item_ids: np.ndarray
    item_factors: np.ndarray
    neighbour_indices: np.ndarray
    neighbour_sims: np.ndarray
    user_index: dict[str, int] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.user_index and self.user_ids.size:
            object.__setattr__(self, "user_index", {str(u): i for i, u in enumerate(self.user_ids.tolist())})

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def knows(self, user_id: str) -> bool:
        return user_id in self.user_index

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The user's factors, when this copy holds users and the user was in the training data."""
        row = self.user_index.get(user_id)
        return None if row is None else self.user_factors[row]

    def user_scores(self, user_id: str, n_items: int) -> np.ndarray | None:
        """Scores over ``n_items`` catalog items (items newer than the model get -inf), or None if unknown."""
        vector = self.user_vector(user_id)
        return None if vector is None else self.scores_for(vector, n_items)

    def scores_for(self, user_vector: np.ndarray, n_items: int) -> np.ndarray | None:
        """Scores of a user vector over ``n_items`` catalog items (newer items get -inf); None if it does not fit
        this model (another number of factors)."""
        if user_vector.shape != (self.item_factors.shape[1],):
            return None
        scores = np.full(n_items, -np.inf, dtype=np.float64)
        known = min(n_items, self.n_items)
        scores[:known] = self.item_factors[:known] @ user_vector
        return scores

    def item_side(self) -> FactorModel:
        """This model without its users: what a /recs replica loads."""
        return replace(
            self,
            user_ids=np.empty(0, dtype=np.str_),
            user_factors=np.empty((0, self.item_factors.shape[1]), dtype=np.float32),
            user_index={},
        )

    def user_rows(self) -> Iterator[tuple[str, bytes]]:
        """(user id, float32 factor bytes) per user: the Redis hash /recs reads a user's vector from."""
        factors = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        for user_id, row in zip(self.user_ids.tolist(), factors, strict=True):
            yield str(user_id), row.tobytes()

    @staticmethod
    def vector_from_bytes(raw: bytes) -> np.ndarray:
        return np.frombuffer(raw, dtype=np.float32)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            version=np.array(self.version, dtype=np.int64),
            user_ids=self.user_ids.astype(np.str_),
            user_factors=self.user_factors,
            item_ids=self.item_ids.astype(np.str_),
            item_factors=self.item_factors,
            neighbour_indices=self.neighbour_indices,
            neighbour_sims=self.neighbour_sims,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> FactorModel:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            return cls(
                version=int(arrays["version"]),
                user_ids=arrays["user_ids"],
                user_factors=arrays["user_factors"],
                item_ids=arrays["item_ids"],
                item_factors=arrays["item_factors"],
                neighbour_indices=arrays["neighbour_indices"],
                neighbour_sims=arrays["neighbour_sims"],
            )


def score_users(user_factors: np.ndarray, item_factors: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """Scores of several users at once: one matrix product instead of a loop of dot products."""
    return user_factors[np.asarray(rows, dtype=np.int64)] @ item_factors.T
