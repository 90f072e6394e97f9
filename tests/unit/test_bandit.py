"""BetaThompson posteriors and ItemStats (the per-item evidence snapshot)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_core.algorithms.bandit import BetaThompson, ItemStats, group_prior_means

SEED_CONFIG = BetaThompson()
IMPRESSIONS_CONFIG = BetaThompson(beta_per_silent_impression=1.0)


def _stats() -> ItemStats:
    return ItemStats(
        likes=np.array([3, 0, 1], dtype=np.float32),
        dislikes=np.array([1, 2, 0], dtype=np.float32),
        impressions=np.array([10, 1, 0], dtype=np.float32),
    )


def test_seed_config_posterior() -> None:
    alpha, beta = SEED_CONFIG.posterior(_stats(), 3)
    assert alpha.dtype == np.float64
    np.testing.assert_array_equal(alpha, [4, 1, 2])  # 1 + likes
    np.testing.assert_array_equal(beta, [2, 3, 1])  # 1 + dislikes; impressions ignored


def test_impressions_config_counts_silent_impressions_clipped_at_zero() -> None:
    alpha, beta = IMPRESSIONS_CONFIG.posterior(_stats(), 3)
    np.testing.assert_array_equal(alpha, [4, 1, 2])
    # silent = max(impressions - likes - dislikes, 0) = [6, 0, 0]; beta = 1 + dislikes + silent
    np.testing.assert_array_equal(beta, [8, 3, 1])


def test_weights_and_priors_are_applied() -> None:
    bandit = BetaThompson(
        prior_alpha=2.0, prior_beta=3.0, alpha_per_dislike=0.5, beta_per_dislike=2.0, beta_per_silent_impression=0.25
    )
    alpha, beta = bandit.posterior(_stats(), 3)
    np.testing.assert_allclose(alpha, [2 + 3 + 0.5, 2 + 0 + 1.0, 2 + 1 + 0])
    np.testing.assert_allclose(beta, [3 + 2 + 0.25 * 6, 3 + 4 + 0, 3 + 0 + 0])


def test_posterior_pads_late_items_with_the_prior() -> None:
    alpha, beta = IMPRESSIONS_CONFIG.posterior(_stats(), 5)
    np.testing.assert_array_equal(alpha, [4, 1, 2, 1, 1])
    np.testing.assert_array_equal(beta, [8, 3, 1, 1, 1])
    alpha, beta = SEED_CONFIG.posterior(_stats(), 2)
    np.testing.assert_array_equal(alpha, [4, 1])
    np.testing.assert_array_equal(beta, [2, 3])


def test_mean() -> None:
    np.testing.assert_allclose(SEED_CONFIG.mean(_stats(), 4), [4 / 6, 1 / 4, 2 / 3, 0.5])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prior_alpha": 0.0},
        {"prior_beta": 0.0},
        {"prior_alpha": -1.0},
        {"alpha_per_dislike": -0.1},
        {"beta_per_dislike": -1.0},
        {"beta_per_silent_impression": -0.5},
    ],
)
def test_invalid_parameters_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BetaThompson(**kwargs)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    "parameter", ["prior_alpha", "prior_beta", "alpha_per_dislike", "beta_per_dislike", "beta_per_silent_impression"]
)
def test_non_finite_parameters_raise_naming_the_parameter(parameter: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"^{parameter} must be a finite number"):
        BetaThompson(**{parameter: value})


def test_sample_shape_range_and_seed() -> None:
    stats = _stats()
    draws = SEED_CONFIG.sample(stats, 7, np.random.default_rng(0))
    assert draws.shape == (7,)
    assert np.all((draws >= 0) & (draws <= 1))
    np.testing.assert_array_equal(draws, SEED_CONFIG.sample(stats, 7, np.random.default_rng(0)))
    assert not np.array_equal(draws, SEED_CONFIG.sample(stats, 7, np.random.default_rng(1)))


def test_sample_follows_the_posterior_mean() -> None:
    # 20,000 identical arms with Beta(4, 2): the sample mean is 2/3 with a standard error of ~0.0013.
    n = 20_000
    stats = ItemStats(np.full(n, 3.0, np.float32), np.full(n, 1.0, np.float32), np.zeros(n, np.float32))
    draws = SEED_CONFIG.sample(stats, n, np.random.default_rng(5))
    assert abs(draws.mean() - 4 / 6) < 0.01


# --- ItemStats ---------------------------------------------------------------------------------------------


def test_empty() -> None:
    stats = ItemStats.empty(3)
    assert len(stats) == 3
    for array in (stats.likes, stats.dislikes, stats.impressions):
        np.testing.assert_array_equal(array, [0, 0, 0])
        assert array.dtype == np.float32
    stats.likes[0] = 5  # the three arrays are independent
    assert stats.dislikes[0] == 0 and stats.impressions[0] == 0
    assert len(ItemStats.empty()) == 0


def test_padded_grows_with_zeros() -> None:
    stats = _stats()
    grown = stats.padded(5)
    assert len(grown) == 5
    np.testing.assert_array_equal(grown.likes, [3, 0, 1, 0, 0])
    np.testing.assert_array_equal(grown.dislikes, [1, 2, 0, 0, 0])
    np.testing.assert_array_equal(grown.impressions, [10, 1, 0, 0, 0])
    assert grown.likes.dtype == np.float32
    assert len(stats) == 3  # the original is untouched


def test_padded_truncates_and_same_size_is_identity() -> None:
    stats = _stats()
    short = stats.padded(2)
    np.testing.assert_array_equal(short.likes, [3, 0])
    np.testing.assert_array_equal(short.dislikes, [1, 2])
    np.testing.assert_array_equal(short.impressions, [10, 1])
    assert stats.padded(3) is stats
    assert len(stats.padded(0)) == 0


def test_bytes_round_trip() -> None:
    stats = ItemStats(np.array([1, 2], dtype=np.int64), np.array([0, 5], np.int64), np.array([9, 9], np.int64))
    restored = ItemStats.from_bytes(stats.to_bytes())
    np.testing.assert_array_equal(restored.likes, [1, 2])
    np.testing.assert_array_equal(restored.dislikes, [0, 5])
    np.testing.assert_array_equal(restored.impressions, [9, 9])
    assert restored.likes.dtype == restored.dislikes.dtype == restored.impressions.dtype == np.float32
    assert len(ItemStats.from_bytes(ItemStats.empty().to_bytes())) == 0


def test_group_prior_means_by_hand() -> None:
    # Group 0: a hit shown 100 times (50 likes), an item with 0 of 2, an unshown item. Group 1: 2 of 2, 0 of 2.
    groups = np.array([0, 0, 0, 1, 1])
    successes = np.array([50.0, 0.0, 0.0, 2.0, 0.0])
    impressions = np.array([100.0, 2.0, 0.0, 2.0, 2.0])
    means = group_prior_means(groups, successes, impressions, base_mean=0.01, per_item_cap=2.0, shrinkage=10.0)
    # Each shown item counts with at most 2 impressions at its own rate; the unshown one not at all:
    # group 0: (2 * 0.5 + 2 * 0 + 10 * 0.01) / (2 + 2 + 10); group 1: (2 * 1 + 2 * 0 + 0.1) / 14.
    np.testing.assert_allclose(means, [1.1 / 14] * 3 + [2.1 / 14] * 2)


def test_group_prior_means_without_evidence_are_the_base_mean() -> None:
    means = group_prior_means(np.array([0, 1, 1]), np.zeros(3), np.zeros(3), 0.02, 2.0, 10.0)
    np.testing.assert_allclose(means, [0.02, 0.02, 0.02])


def test_group_prior_means_are_clipped_to_a_plausible_like_rate() -> None:
    # Group 0: every impression liked (rate 1); group 1: shown, never liked (rate 0). No shrinkage, so the
    # raw group means are 1 and 0: a prior mean is kept within [1e-4, 0.5] whatever a few arms did.
    groups = np.array([0, 0, 1])
    means = group_prior_means(
        groups, np.array([2.0, 2.0, 0.0]), np.array([2.0, 2.0, 2.0]), base_mean=0.01, per_item_cap=2.0, shrinkage=0.0
    )
    np.testing.assert_allclose(means, [0.5, 0.5, 1e-4])
