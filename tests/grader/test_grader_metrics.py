"""Metric formulas against hand-computed values."""

from __future__ import annotations

import math

import pytest

from grader.metrics import (
    coverage,
    dcg,
    ideal_dcg,
    jaccard_dissimilarity,
    latency_summary,
    list_diversity,
    ndcg_at_k,
    precision_at_k,
)

F = frozenset


def test_precision_divides_by_k_whatever_the_list_length() -> None:
    assert precision_at_k(3, 10) == 0.3
    assert precision_at_k(0, 10) == 0.0


def test_dcg_discounts_by_log2_of_position_plus_two() -> None:
    # 1/log2(2) + 0/log2(3) + 1/log2(4) = 1 + 0.5
    assert dcg([1, 0, 1]) == 1.5
    assert dcg([]) == 0.0


def test_ideal_dcg_uses_at_most_k_relevant_items() -> None:
    # 1 + 1/log2(3) + 1/2
    assert ideal_dcg(3, 10) == pytest.approx(2.1309297535714578)
    assert ideal_dcg(50, 2) == pytest.approx(1 + 1 / math.log2(3))
    assert ideal_dcg(0, 10) == 0.0


def test_ndcg_hand_computed() -> None:
    # hits at positions 0 and 2, three relevant items were available: 1.5 / 2.1309297535714578
    assert ndcg_at_k([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], 3, 10) == pytest.approx(0.7039180890341347)
    assert ndcg_at_k([1, 1, 0], 2, 10) == pytest.approx(1.0)
    # Only the first k positions count.
    assert ndcg_at_k([0, 0, 1], 1, 2) == 0.0


def test_ndcg_is_zero_when_nothing_relevant_was_left() -> None:
    assert ndcg_at_k([0] * 10, 0, 10) == 0.0


def test_jaccard_dissimilarity() -> None:
    assert jaccard_dissimilarity(F({"A", "B"}), F({"B", "C"})) == pytest.approx(2 / 3)
    assert jaccard_dissimilarity(F({"A"}), F({"A"})) == 0.0
    assert jaccard_dissimilarity(F(), F({"A"})) == 1.0
    assert jaccard_dissimilarity(F(), F()) == 0.0


def test_list_diversity_is_the_mean_over_pairs() -> None:
    # pairs: (A, A) = 0, (A, ∅) = 1, (A, ∅) = 1
    assert list_diversity([F({"A"}), F({"A"}), F()]) == pytest.approx(2 / 3)
    # (A B, B C) = 2/3, (A B, C) = 1, (B C, C) = 1/2 -> 13/18
    assert list_diversity([F({"A", "B"}), F({"B", "C"}), F({"C"})]) == pytest.approx(13 / 18)
    assert list_diversity([F({"A"})]) is None
    assert list_diversity([]) is None


def test_coverage() -> None:
    assert coverage(5, 20) == 0.25
    assert coverage(0, 0) == 0.0


def test_latency_summary_percentiles_interpolate() -> None:
    summary = latency_summary([40.0, 10.0, 30.0, 20.0])
    assert summary.count == 4
    assert summary.mean_ms == 25.0
    assert summary.p50_ms == pytest.approx(25.0)
    # rank (n-1)*0.95 = 2.85 -> 30 + 0.85*10
    assert summary.p95_ms == pytest.approx(38.5)
    assert summary.p99_ms == pytest.approx(39.7)
    assert latency_summary([]).mean_ms is None
