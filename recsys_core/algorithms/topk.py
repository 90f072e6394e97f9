"""Top-k selection over a score vector, the serving math of every strategy."""

from __future__ import annotations

import numpy as np


def top_k_indices(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first, skipping ``exclude`` (a boolean mask), -inf and NaN.

    ``argpartition`` keeps this O(n) for the 10-ish slots we need out of ~10^4 items.
    """
    if k <= 0 or scores.size == 0:
        return np.empty(0, dtype=np.int64)
    if exclude is not None:
        masked = np.where(exclude[: scores.size], -np.inf, scores)
    else:
        masked = scores.astype(np.float64, copy=True)
    # NaN is "not a candidate", as -inf: argmax would return the first NaN, and a partition sorts NaN last.
    masked[np.isnan(masked)] = -np.inf
    if k == 1:  # the common exploration slot: one pass instead of a partition
        best = int(np.argmax(masked))
        return np.array([best], dtype=np.int64) if masked[best] > -np.inf else np.empty(0, dtype=np.int64)
    allowed = int(np.count_nonzero(masked > -np.inf))
    k = min(k, allowed)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-masked, k - 1)[:k] if k < masked.size else np.arange(masked.size)
    order = np.argsort(-masked[part], kind="stable")
    return part[order].astype(np.int64)


def rank_normalize(scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Map scores to (0, 1] by rank, so components with different scales can be blended."""
    result = np.zeros(scores.size, dtype=np.float64)
    idx = np.flatnonzero(valid) if valid is not None else np.arange(scores.size)
    if idx.size == 0:
        return result
    order = np.argsort(scores[idx], kind="stable")
    ranks = np.empty(idx.size, dtype=np.float64)
    ranks[order] = np.arange(1, idx.size + 1)
    result[idx] = ranks / idx.size
    return result
