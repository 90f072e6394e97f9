"""Metric formulas: pure functions of numbers, lists and sets (no I/O, no grader types).

Conventions (the report repeats them):
- precision@k of one list = hits / k, whatever the list's length (a short or failed list just has fewer hits);
- NDCG@k uses binary relevance; the ideal DCG assumes min(k, relevant items the user has not been shown yet)
  hits at the top. When that number is 0 the ideal DCG is 0 and the list's NDCG is defined as 0 (nothing
  could be gained, so nothing is credited; the call still counts in the mean);
- diversity of one list = mean pairwise Jaccard dissimilarity of the items' genre sets, where an item without
  genres has the empty set: dissimilarity 1 against any non-empty set, 0 between two empty sets;
- percentiles interpolate linearly between order statistics (numpy's default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np


def precision_at_k(hits: int, k: int) -> float:
    return hits / k


def dcg(relevance: Sequence[bool | int]) -> float:
    """Discounted cumulative gain of a relevance vector, position 0 first: sum of rel_i / log2(i + 2)."""
    return sum(float(rel) / math.log2(position + 2) for position, rel in enumerate(relevance))


def ideal_dcg(relevant_available: int, k: int) -> float:
    return dcg([1] * min(k, max(0, relevant_available)))


def ndcg_at_k(relevance: Sequence[bool | int], relevant_available: int, k: int) -> float:
    ideal = ideal_dcg(relevant_available, k)
    if ideal == 0.0:
        return 0.0
    return dcg(relevance[:k]) / ideal


def jaccard_dissimilarity(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    if union == 0:
        return 0.0
    return 1.0 - len(a & b) / union


def list_diversity(genre_sets: Sequence[frozenset[str]]) -> float | None:
    """Mean pairwise dissimilarity; None for a list with fewer than two items (no pair to compare)."""
    pairs = [jaccard_dissimilarity(a, b) for a, b in combinations(genre_sets, 2)]
    return sum(pairs) / len(pairs) if pairs else None


def coverage(unique_items: int, catalog_size: int) -> float:
    return unique_items / catalog_size if catalog_size else 0.0


def mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def latency_summary(latencies_ms: Sequence[float]) -> LatencySummary:
    if not latencies_ms:
        return LatencySummary(0, None, None, None, None)
    values = np.asarray(latencies_ms, dtype=float)
    p50, p95, p99 = np.percentile(values, [50, 95, 99]).tolist()
    return LatencySummary(len(values), float(values.mean()), p50, p95, p99)
