"""top_k_indices and rank_normalize: the serving math of every strategy."""

from __future__ import annotations

import numpy as np

from recsys_core.algorithms.topk import rank_normalize, top_k_indices

SCORES = np.array([0.1, 0.9, 0.5, 0.7])


def test_best_first() -> None:
    result = top_k_indices(SCORES, 2)
    assert result.dtype == np.int64
    assert result.tolist() == [1, 3]


def test_k_larger_than_size_returns_all_sorted() -> None:
    assert top_k_indices(SCORES, 10).tolist() == [1, 3, 2, 0]


def test_exclusion_mask() -> None:
    exclude = np.array([False, True, False, False])
    assert top_k_indices(SCORES, 2, exclude).tolist() == [3, 2]
    assert top_k_indices(SCORES, 10, exclude).tolist() == [3, 2, 0]


def test_k_larger_than_allowed() -> None:
    exclude = np.array([True, True, False, True])
    assert top_k_indices(SCORES, 3, exclude).tolist() == [2]
    assert top_k_indices(SCORES, 3, np.ones(4, dtype=bool)).tolist() == []


def test_minus_inf_is_not_a_candidate() -> None:
    scores = np.array([1.0, -np.inf, 3.0, -np.inf, 2.0])
    assert top_k_indices(scores, 5).tolist() == [2, 4, 0]
    assert top_k_indices(np.full(3, -np.inf), 2).tolist() == []


def test_nan_is_never_chosen_whatever_k() -> None:
    scores = np.array([np.nan, 0.5, 0.9])
    # k=1 takes its own path (one argmax): it must agree with the first item of every longer answer.
    assert top_k_indices(scores, 1).tolist() == [2]
    assert top_k_indices(scores, 2).tolist() == [2, 1]
    assert top_k_indices(scores, 3).tolist() == [2, 1]
    assert top_k_indices(scores, 1, np.array([False, False, True])).tolist() == [1]
    assert top_k_indices(np.array([0.5, np.nan, np.nan]), 1).tolist() == [0]
    for k in (1, 2):
        assert top_k_indices(np.full(3, np.nan), k).tolist() == []


def test_empty_inputs_and_non_positive_k() -> None:
    assert top_k_indices(SCORES, 0).tolist() == []
    assert top_k_indices(SCORES, -1).tolist() == []
    assert top_k_indices(np.array([]), 3).tolist() == []


def test_ties_in_index_order_when_everything_is_returned() -> None:
    scores = np.array([1.0, 2.0, 2.0, 1.0, 2.0])
    assert top_k_indices(scores, 5).tolist() == [1, 2, 4, 0, 3]


def test_ties_select_the_right_values_and_are_deterministic() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, size=200).astype(np.float64)
    first = top_k_indices(scores, 50)
    assert np.array_equal(first, top_k_indices(scores, 50))
    assert len(set(first.tolist())) == 50
    np.testing.assert_array_equal(scores[first], np.sort(scores)[::-1][:50])


def test_partial_selection_matches_a_full_sort() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        scores = rng.normal(size=300)
        exclude = rng.random(300) < 0.3
        expected = [i for i in np.argsort(-scores) if not exclude[i]][:10]
        assert top_k_indices(scores, 10, exclude).tolist() == expected


def test_input_not_modified() -> None:
    scores = SCORES.copy()
    top_k_indices(scores, 2, np.array([True, False, False, False]))
    np.testing.assert_array_equal(scores, SCORES)


def test_plus_inf_scores_do_not_shrink_k() -> None:
    # 3 candidates (none excluded, none -inf) and k=3: all three must come back, +inf first.
    assert top_k_indices(np.array([np.inf, 1.0, 2.0]), 3).tolist() == [0, 2, 1]


# --- rank_normalize ----------------------------------------------------------------------------------------


def test_rank_normalize_all_valid() -> None:
    np.testing.assert_allclose(rank_normalize(np.array([30.0, 10.0, 20.0])), [1.0, 1 / 3, 2 / 3])


def test_rank_normalize_with_valid_mask() -> None:
    result = rank_normalize(np.array([30.0, 10.0, 20.0]), np.array([True, False, True]))
    np.testing.assert_allclose(result, [1.0, 0.0, 0.5])


def test_rank_normalize_ties_and_empty() -> None:
    np.testing.assert_allclose(rank_normalize(np.array([5.0, 5.0])), [0.5, 1.0])
    np.testing.assert_array_equal(rank_normalize(np.array([1.0, 2.0]), np.zeros(2, dtype=bool)), [0.0, 0.0])
    assert rank_normalize(np.array([])).size == 0


def test_ties_keep_index_order_beyond_a_small_sort() -> None:
    # 50 items in two tied levels: past numpy's insertion-sort size (16) only a stable sort keeps index order.
    scores = np.array([1.0, 2.0, 2.0, 1.0, 2.0] * 10)
    expected = [i for i in range(50) if scores[i] == 2.0] + [i for i in range(50) if scores[i] == 1.0]
    assert top_k_indices(scores, 50).tolist() == expected
