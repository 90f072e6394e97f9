"""An immutable view of the catalog as the serving path needs it: ids, index and a genre matrix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class CatalogView:
    version: int
    item_ids: tuple[str, ...]
    genre_names: tuple[str, ...]
    # (n_items, n_genres) booleans; row i describes item_ids[i].
    genre_matrix: np.ndarray
    index: dict[str, int] = field(repr=False, compare=False, default_factory=dict)
    # Float views computed once, so per-request scoring does no bool-to-float conversions:
    genre_float: np.ndarray = field(init=False, repr=False, compare=False)
    # Row i averages over item i's genres: genre_mean @ per_genre_values = each item's mean over its genres.
    genre_mean: np.ndarray = field(init=False, repr=False, compare=False)
    # How many genres each item has (0 for none).
    genre_counts: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.index and self.item_ids:
            object.__setattr__(self, "index", {item_id: i for i, item_id in enumerate(self.item_ids)})
        as_float = self.genre_matrix.astype(np.float32)
        genre_counts = self.genre_matrix.sum(axis=1).astype(np.int64)
        counts = np.maximum(genre_counts, 1).astype(np.float32)[:, None]
        object.__setattr__(self, "genre_float", as_float)
        object.__setattr__(self, "genre_mean", as_float / counts)
        object.__setattr__(self, "genre_counts", genre_counts)

    @classmethod
    def empty(cls) -> CatalogView:
        return cls(0, (), (), np.zeros((0, 0), dtype=bool))

    @classmethod
    def build(cls, version: int, item_ids: Sequence[str], genres: Mapping[str, Sequence[str]]) -> CatalogView:
        names = sorted({g for item_id in item_ids for g in genres.get(item_id, ())})
        column = {name: j for j, name in enumerate(names)}
        matrix = np.zeros((len(item_ids), len(names)), dtype=bool)
        for i, item_id in enumerate(item_ids):
            for genre in genres.get(item_id, ()):
                matrix[i, column[genre]] = True
        return cls(version, tuple(item_ids), tuple(names), matrix)

    def __len__(self) -> int:
        return len(self.item_ids)

    def indices_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Catalog indices of the ids that are in the catalog (unknown ids are dropped)."""
        index = self.index
        found = [index[i] for i in item_ids if i in index]
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def mask_of(self, item_ids: Iterable[str]) -> np.ndarray:
        mask = np.zeros(len(self.item_ids), dtype=bool)
        mask[self.indices_of(item_ids)] = True
        return mask

    def genres_of(self, idx: int) -> tuple[str, ...]:
        return tuple(self.genre_names[j] for j in np.flatnonzero(self.genre_matrix[idx]))
