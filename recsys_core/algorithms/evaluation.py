"""Offline evaluation of a factor model on a held-out slice of the most recent likes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_core.algorithms.topk import top_k_indices


@dataclass(frozen=True, slots=True)
class OfflineMetrics:
    precision_at_10: float
    ndcg_at_10: float
    users_evaluated: int


def recent_holdout_mask(timestamps: np.ndarray, fraction: float) -> np.ndarray:
    """Marks the most recent ``fraction`` of the entries (at least one when there are two or more)."""
    n = timestamps.size
    if n < 2 or fraction <= 0:
        return np.zeros(n, dtype=bool)
    n_holdout = min(max(round(n * fraction), 1), n - 1)
    order = np.argsort(timestamps, kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[-n_holdout:]] = True
    return mask


def dcg_discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def evaluate_at_k(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train_items: dict[int, np.ndarray],
    heldout_items: dict[int, np.ndarray],
    k: int = 10,
) -> OfflineMetrics:
    """Precision@k and NDCG@k (binary relevance) of each user's held-out items, train items excluded."""
    discounts = dcg_discounts(k)
    precisions: list[float] = []
    ndcgs: list[float] = []
    n_items = item_factors.shape[0]
    for row, relevant in heldout_items.items():
        if relevant.size == 0:
            continue
        scores = item_factors @ user_factors[row]
        exclude = np.zeros(n_items, dtype=bool)
        exclude[train_items.get(row, np.empty(0, dtype=np.int64))] = True
        top = top_k_indices(scores, k, exclude)
        hits = np.isin(top, relevant)
        precisions.append(float(hits.sum()) / k)
        ideal = discounts[: min(k, relevant.size)].sum()
        ndcgs.append(float((hits * discounts[: top.size]).sum() / ideal))
    if not precisions:
        return OfflineMetrics(0.0, 0.0, 0)
    return OfflineMetrics(float(np.mean(precisions)), float(np.mean(ndcgs)), len(precisions))
